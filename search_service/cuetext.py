"""Cue text for RediSearch: Chinese, Japanese and Korean characters indexed one by one, and said queries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from search_service.errors import InvalidArgument

MAX_SAID_BYTES = 1000
MAX_SAID_TERMS = 64
MIN_PREFIX_CHARS = 2

# Han (with extensions and compatibility ideographs), kana, Hangul syllables and jamo, CJK punctuation excluded.
_CJK_CHARS = (
    "\u1100-\u11ff\u3040-\u30ff\u3131-\u318e\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\U00020000-\U0002ffff"
)
_CJK = re.compile(f"[{_CJK_CHARS}]")
# A word as RediSearch's default tokenizer cuts it: letters, digits and "_" between separators. CJK
# characters are words of their own.
_TOKEN = re.compile(f"[{_CJK_CHARS}]|[^\\W{_CJK_CHARS}]+")


def index_form(text: str) -> str:
    """The text as indexed: every CJK character a word of its own.

    RediSearch's Chinese segmenter cuts "我们明天见" into words of its dictionary that do not include
    "明天", so a query for it misses; single characters matched as a phrase find any run of them.
    """
    return _CJK.sub(lambda m: f" {m.group(0)} ", text)


def tokens(text: str) -> list[str]:
    """The words of `text` as the index sees them, lower-cased."""
    return [t.lower() for t in _TOKEN.findall(text)]


@dataclass(frozen=True)
class SaidQuery:
    """A said query as RediSearch terms (only word characters: nothing to escape) and the words to highlight."""

    expression: str
    words: tuple[str, ...]


def parse_said(said: str) -> SaidQuery:
    """The RediSearch expression for a said query: every part must occur in a cue.

    "double quotes" make an exact phrase; a word ending in * is a prefix; a run of CJK characters is a
    phrase of its characters. Anything but word characters separates words, as it does in the index.
    """
    if len(said.encode()) > MAX_SAID_BYTES:
        raise InvalidArgument(f"said is {len(said.encode())} bytes; at most {MAX_SAID_BYTES}")
    parts: list[str] = []
    words: list[str] = []
    for i, segment in enumerate(said.split('"')):
        quoted = i % 2 == 1
        if quoted:
            terms = tokens(segment)
            words += terms
            if terms:
                parts.append(_phrase(terms))
            continue
        for raw in segment.split():
            terms = tokens(raw)
            if not terms:
                continue
            prefix = raw.endswith("*") and len(terms[-1]) >= MIN_PREFIX_CHARS and not _CJK.match(terms[-1])
            words += terms
            parts += _word_parts(terms, prefix)
    if not parts:
        raise InvalidArgument(f"said {said[:80]!r} holds no words to search for")
    if len(words) > MAX_SAID_TERMS:
        raise InvalidArgument(f"said holds {len(words)} words; at most {MAX_SAID_TERMS}")
    return SaidQuery(" ".join(parts), tuple(dict.fromkeys(w for part in parts for w in _highlight_words(part))))


def _highlight_words(part: str) -> list[str]:
    terms = part.strip('"').rstrip("*").split()
    return ["".join(terms)] if all(_CJK.match(t) for t in terms) else terms


def _phrase(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else '"' + " ".join(terms) + '"'


def _word_parts(terms: list[str], prefix: bool) -> list[str]:
    """One unquoted word cut into terms: runs of CJK characters become phrases, the rest plain terms (the
    last a prefix when it ended in *). "don't" makes two terms that must follow each other."""
    if len(terms) > 1 and not any(_CJK.match(t) for t in terms):
        return [*terms[:-1], terms[-1] + "*"] if prefix else [_phrase(terms)]
    parts: list[str] = []
    run: list[str] = []
    for term in terms:
        if _CJK.match(term):
            run.append(term)
            continue
        if run:
            parts.append(_phrase(run))
            run = []
        parts.append(term)
    if run:
        parts.append(_phrase(run))
    if prefix and parts and not parts[-1].startswith('"'):
        parts[-1] += "*"
    return parts
