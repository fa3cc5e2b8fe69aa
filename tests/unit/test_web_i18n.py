"""The page's message catalogues: every language has every key with the same placeholders, and no visible text
or accessible name in the page's template or scripts bypasses them."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

STATIC = Path(__file__).resolve().parents[2] / "client" / "web" / "static"
TEMPLATE = STATIC.parent / "templates" / "index.html"
LOCALES = STATIC / "locales"
LANGUAGES = ("en", "zh-CN")
# Attributes whose text people read or hear: each needs a data-i18n-<attribute> key in the template.
NAMED_ATTRIBUTES = ("aria-label", "placeholder", "title", "alt")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
LETTERS = re.compile(r"[^\W\d_]")
# Words a translation may keep as they are: names of programs, units and protocols.
UNTRANSLATED = {
    "clipsearch",
    "index",
    "reindex",
    "prune",
    "serve",
    "web",
    "http",
    "mb",
    "kb",
    "ms",
    "jpeg",
    "png",
    "gif",
    "webp",
    "heic",
    "avif",
    "gb",
}


class _Literal:
    """Reads a JavaScript object literal of string keys and values (as the catalogues are written)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def skip(self) -> None:
        while True:
            while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
                self.at += 1
            if self.text.startswith("//", self.at):
                self.at = self.text.index("\n", self.at)
            else:
                return

    def expect(self, char: str) -> None:
        self.skip()
        assert self.text[self.at] == char, f"expected {char!r} at {self.text[self.at : self.at + 40]!r}"
        self.at += 1

    def string(self) -> str:
        self.skip()
        quote = self.text[self.at]
        assert quote in "\"'", f"expected a string at {self.text[self.at : self.at + 40]!r}"
        out, self.at = [], self.at + 1
        while self.text[self.at] != quote:
            if self.text[self.at] == "\\":
                self.at += 1
                escaped = self.text[self.at]
                if escaped == "u":
                    out.append(chr(int(self.text[self.at + 1 : self.at + 5], 16)))
                    self.at += 4
                else:
                    out.append({"n": "\n", "t": "\t"}.get(escaped, escaped))
            else:
                out.append(self.text[self.at])
            self.at += 1
        self.at += 1
        return "".join(out)

    def key(self) -> str:
        self.skip()
        if self.text[self.at] in "\"'":
            return self.string()
        found = re.compile(r"[A-Za-z_$][\w$]*").match(self.text, self.at)
        assert found, f"expected a key at {self.text[self.at : self.at + 40]!r}"
        self.at = found.end()
        return found.group()

    def value(self) -> Any:
        self.skip()
        if self.text[self.at] != "{":
            return self.string()
        self.at += 1
        entries: dict[str, Any] = {}
        while True:
            self.skip()
            if self.text[self.at] == "}":
                self.at += 1
                return entries
            name = self.key()
            assert name not in entries, f"{name} is defined twice"
            self.expect(":")
            entries[name] = self.value()
            self.skip()
            if self.text[self.at] == ",":
                self.at += 1


def catalogue(language: str) -> dict[str, str | dict[str, str]]:
    text = (LOCALES / f"{language}.js").read_text(encoding="utf-8")
    start = text.index("export default")
    parsed: dict[str, str | dict[str, str]] = _Literal(text[start + len("export default") :]).value()
    return parsed


def forms(entry: str | dict[str, str]) -> list[str]:
    return [entry] if isinstance(entry, str) else list(entry.values())


def placeholders(entry: str | dict[str, str]) -> set[str]:
    return {name for form in forms(entry) for name in PLACEHOLDER.findall(form)}


# A server error's message (reason.*) is given the server's sentence and what it names; English shows the
# sentence itself, another language says it in its own words with what it needs of these.
REASON_PARAMS = {"detail", "service", "address"}


@pytest.fixture(scope="module")
def catalogues() -> dict[str, dict[str, str | dict[str, str]]]:
    return {language: catalogue(language) for language in LANGUAGES}


def test_every_language_has_every_key_with_the_same_placeholders(catalogues: dict[str, Any]) -> None:
    english = catalogues["en"]
    for language, messages in catalogues.items():
        assert sorted(set(english) - set(messages)) == [], f"{language} lacks these keys"
        assert sorted(set(messages) - set(english)) == [], f"{language} has keys English lacks"
        for key, entry in messages.items():
            assert all(form.strip() for form in forms(entry)), f"{language} {key} is empty"
            if isinstance(entry, dict):
                assert "other" in entry and set(entry) <= {"zero", "one", "two", "few", "many", "other"}, key
            if key.startswith("reason."):
                assert placeholders(entry) <= REASON_PARAMS, f"{language} {key}: unknown placeholders"
            else:
                assert placeholders(entry) == placeholders(english[key]), f"{language} {key}: placeholders differ"


def test_english_plurals_have_one_and_other(catalogues: dict[str, Any]) -> None:
    for key, entry in catalogues["en"].items():
        if isinstance(entry, dict):
            assert set(entry) == {"one", "other"}, key
            assert all("{count}" in form or "count" not in key for form in entry.values()), key


def test_chinese_is_translated(catalogues: dict[str, Any]) -> None:
    """A Chinese message has no English words left but names of commands, units and placeholders."""
    for key, entry in catalogues["zh-CN"].items():
        for form in forms(entry):
            text = PLACEHOLDER.sub("", re.sub(r"`[^`]*`|<kbd>[^<]*</kbd>", "", form))
            words = {word.lower() for word in re.findall(r"[A-Za-z]{2,}", text)}
            assert words <= UNTRANSLATED, f"zh-CN {key} keeps English words: {sorted(words - UNTRANSLATED)}"
            assert "..." not in form and not re.search(r"[\u4e00-\u9fff][,;:?!]", form), (
                f"zh-CN {key}: use 、，；：？！"
            )


# ---- the template -------------------------------------------------------------------------------------------


class _TemplateCheck(HTMLParser):
    """Text and named attributes of the template that are not marked for translation."""

    SKIPPED = frozenset({"script", "style", "svg", "kbd", "code"})
    VOID = frozenset({"meta", "link", "input", "img", "br", "hr", "use", "circle", "rect", "path", "source"})

    def __init__(self, messages: dict[str, Any]) -> None:
        super().__init__(convert_charrefs=True)
        self.messages = messages
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.problems: list[str] = []
        self.texts: dict[str, list[str]] = {}

    def _exempt(self) -> bool:
        return any(tag in self.SKIPPED or attrs.get("translate") == "no" for tag, attrs in self.stack)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {name: value or "" for name, value in attrs_list}
        for name in NAMED_ATTRIBUTES:
            value = attrs.get(name, "")
            if LETTERS.search(value) and attrs.get("translate") != "no":
                key = attrs.get(f"data-i18n-{name}")
                if key is None:
                    self.problems.append(f'<{tag} {name}="{value}"> has no data-i18n-{name}')
                elif self._english(key) != value:
                    self.problems.append(f"<{tag} {name}> reads {value!r}, but English {key} is {self._english(key)!r}")
        for name, key in attrs.items():
            if (name == "data-i18n" or name.startswith("data-i18n-")) and key not in self.messages:
                self.problems.append(f'<{tag} {name}="{key}">: no such key in the catalogues')
        if "data-i18n" in attrs:
            self.texts[attrs["data-i18n"]] = []
        if tag not in self.VOID:
            self.stack.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs_list)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        marked = next((attrs["data-i18n"] for _, attrs in reversed(self.stack) if "data-i18n" in attrs), None)
        if marked is not None:
            self.texts[marked].append(data)
        elif LETTERS.search(data) and not self._exempt():
            where = self.stack[-1][0] if self.stack else "document"
            self.problems.append(f"text {data.strip()!r} in <{where}> has no data-i18n key")

    def _english(self, key: str) -> str:
        entry = self.messages.get(key, "")
        return entry if isinstance(entry, str) else entry.get("other", "")


def test_template_text_and_names_come_from_the_catalogue(catalogues: dict[str, Any]) -> None:
    check = _TemplateCheck(catalogues["en"])
    check.feed(TEMPLATE.read_text(encoding="utf-8"))
    assert check.problems == []
    # The template's English (what shows before the script runs) is the catalogue's.
    for key, parts in check.texts.items():
        shown = " ".join("".join(parts).split())
        english = " ".join(re.sub(r"</?kbd>", "", check._english(key)).split())
        assert shown == english, f"the template's text for {key} differs from en.js"


def test_the_template_check_finds_unmarked_text(catalogues: dict[str, Any]) -> None:
    check = _TemplateCheck(catalogues["en"])
    check.feed('<p>Hello</p><button aria-label="Close"></button><b data-i18n="no.such">x</b><kbd>Esc</kbd>')
    assert len(check.problems) == 3, check.problems


# ---- the scripts ---------------------------------------------------------------------------------------------

# Literals that read as text for people: words with a space between them, a capitalised word, CJK or typographic
# punctuation. Identifiers, CSS selectors, event and attribute names do not.
PROSE = re.compile(r"[A-Za-z]{2,} +[A-Za-z]{2,}|^[A-Z][a-z]{2,}|[\u3000-\u9fff\uff00-\uffef“”‘’…]")
# Capitalised literals that are names the platform gives (keys, errors, headers), not text.
PLATFORM_NAMES = {"AbortError", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Enter", "Escape", "Files"}
PLATFORM_NAMES |= {"Range", "Accept", "Content-Type", "Tab"}
# A literal given straight to something people read: an element's text or a named attribute.
SHOWN = re.compile(
    r"""(?:\.(?:textContent|innerText|title|alt|placeholder)\s*=|\b(?:text|title|alt|placeholder|"aria-label")\s*:"""
    r"""|setAttribute\(\s*"(?:aria-label|title|alt|placeholder)"\s*,)\s*$"""
)
# A literal that names CSS classes ("svc up"), wherever it is, is code.
CLASSES = re.compile(r"""(?:\bclass\s*:|\.className\s*=|classList\.\w+\()[^,;{}()]*$""")
REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}
IGNORE = "i18n-ignore"


def js_literals(source: str) -> list[tuple[int, str, str]]:
    """(line, text before the literal on its line, literal text) of each string and template literal, comments
    and regular expressions skipped; a template literal's ${...} parts are scanned as code."""
    found: list[tuple[int, str, str]] = []

    def scan(code: str, base_line: int) -> None:
        at, last = 0, ""
        while at < len(code):
            char = code[at]
            if code.startswith("//", at):
                at = code.find("\n", at)
                at = len(code) if at < 0 else at
            elif code.startswith("/*", at):
                at = code.index("*/", at) + 2
            elif char == "/" and last in REGEX_BEFORE:
                at += 1
                in_class = False
                while code[at] != "/" or in_class:
                    if code[at] == "\\":
                        at += 1
                    elif code[at] == "[":
                        in_class = True
                    elif code[at] == "]":
                        in_class = False
                    at += 1
                at += 1
                last = "/"
            elif char in "\"'`":
                start = at
                at += 1
                text: list[str] = []
                while code[at] != char:
                    if code[at] == "\\":
                        text.append(code[at : at + 2])
                        at += 2
                    elif char == "`" and code.startswith("${", at):
                        depth, inner = 1, at + 2
                        while depth:
                            depth += {"{": 1, "}": -1}.get(code[inner], 0)
                            inner += 1
                        scan(code[at + 2 : inner - 1], base_line + code.count("\n", 0, at))
                        text.append("{}")
                        at = inner
                    else:
                        text.append(code[at])
                        at += 1
                at += 1
                line_start = code.rfind("\n", 0, start) + 1
                found.append((base_line + code.count("\n", 0, start), code[line_start:start], "".join(text)))
                last = "a"
            else:
                if not char.isspace():
                    last = char if not (char.isalnum() or char in "_$") else "a"
                    if last == "a":
                        word = re.compile(r"[\w$]+").match(code, at)
                        assert word
                        if word.group() in ("return", "typeof", "case", "in", "of"):
                            last = ""
                        at = word.end()
                        continue
                at += 1

    scan(source, 1)
    return found


def bypasses(source: str) -> list[str]:
    lines = source.splitlines()
    problems = []
    for line, before, text in js_literals(source):
        if IGNORE in lines[line - 1] or CLASSES.search(before):
            continue
        prose = PROSE.search(text) and text not in PLATFORM_NAMES
        if prose or (SHOWN.search(before) and LETTERS.search(text)):
            problems.append(f"line {line}: {text!r}")
    return problems


def page_scripts() -> list[Path]:
    return sorted(path for path in STATIC.glob("*.js"))


def test_scripts_show_no_text_but_the_catalogue_s() -> None:
    problems = {path.name: bypasses(path.read_text(encoding="utf-8")) for path in page_scripts()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_script_check_finds_text_that_bypasses_the_catalogue() -> None:
    source = """
        const a = "No matches";                       // a capitalised word
        node.textContent = "up";                      // shown as it is
        el("span", { text: `${n} results` });         // words in a template literal
        const b = "找不到";                            // Chinese
        const ok = [t("status.results"), /[,，"']/, ".card-open", "ArrowLeft", `${a}`, "click"];
        const fine = "Not for people"; // i18n-ignore
        x.setAttribute("aria-label", "Close");
    """
    assert len(bypasses(source)) == 5, bypasses(source)


def test_scripts_use_only_keys_the_catalogues_have(catalogues: dict[str, Any]) -> None:
    english = catalogues["en"]
    for path in [*page_scripts()]:
        source = path.read_text(encoding="utf-8")
        for key in re.findall(r"""\bt\(\s*["']([\w.]+)["']""", source):
            assert key in english, f"{path.name}: t({key!r}) has no message"
        for prefix in re.findall(r"\bt\(\s*`([\w.]+)\$\{", source):
            assert any(key.startswith(prefix) for key in english), f"{path.name}: no message starts with {prefix}"
        for pair in re.findall(r"""\[\s*"([\w]+\.[\w.]+)"\s*,""", source):
            assert pair in english, f"{path.name}: {pair!r} has no message"
