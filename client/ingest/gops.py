"""Leaving out the end of an H.264 group of pictures that no sampled frame needs, before it reaches the decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

import av

if TYPE_CHECKING:
    from typing import TypeAlias

    VideoPacket: TypeAlias = av.Packet[av.VideoStream]

# A group of pictures larger than this is decoded whole rather than held back in memory.
MAX_GOP_BYTES = 64 << 20
_SLICE, _IDR = 1, 5


class AvcPackets:
    """Reads the NAL unit headers of H.264 packets in the length-prefixed (MP4, Matroska) layout."""

    def __init__(self, extradata: bytes | None) -> None:
        if not extradata or len(extradata) < 7 or extradata[0] != 1:
            raise ValueError("not an avcC configuration")
        self._length_size = (extradata[4] & 3) + 1

    def _headers(self, data: bytes) -> Iterator[int]:
        size, offset = self._length_size, 0
        while offset + size < len(data):
            length = int.from_bytes(data[offset : offset + size], "big")
            yield data[offset + size]
            offset += size + length

    def is_idr(self, data: bytes) -> bool:
        """Whether the packet holds an IDR picture: nothing after it refers to what came before it."""
        return any(header & 0x1F == _IDR for header in self._headers(data))

    def is_reference(self, data: bytes) -> bool:
        """Whether other pictures may refer to this one (a slice with nal_ref_idc != 0); unknown counts as yes."""
        for header in self._headers(data):
            if header & 0x1F in (_SLICE, _IDR):
                return bool(header >> 5 & 3)
        return True


def trimmed_packets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    seconds: Callable[[int], Fraction],
    last_target: Callable[[Fraction], Fraction | None],
) -> Iterator[VideoPacket]:
    """The stream's packets in decoding order, without those at the end of each closed group of pictures
    that come after every frame a sample can still need, when the decoder skips non-reference frames.

    A group's packets are held until the next IDR picture shows where it ends. `last_target(end)` is the
    last sampling time before `end` that the sampler has not passed (None: none); the frame a sample at
    that time takes is the first reference frame at or after it, and every packet decoded up to the last
    one shown at or before that frame is kept. Groups whose end is unknown (the last one, or one whose
    next key packet is not an IDR picture) and groups with packets without timestamps are kept whole.
    Raises ValueError at once for H.264 that is not length-prefixed.
    """
    return _trimmed(container, stream, AvcPackets(stream.codec_context.extradata), seconds, last_target)


def _trimmed(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    avc: AvcPackets,
    seconds: Callable[[int], Fraction],
    last_target: Callable[[Fraction], Fraction | None],
) -> Iterator[VideoPacket]:
    group: list[VideoPacket] = []
    size = 0
    for packet in container.demux(stream):
        data = bytes(packet) if packet.size else b""
        if packet.is_keyframe and data and avc.is_idr(data) and group:
            end = seconds(packet.pts) if packet.pts is not None else None
            yield from _needed(group, end, avc, seconds, last_target)
            group, size = [], 0
        if packet.size == 0 or size > MAX_GOP_BYTES:
            yield from group
            group, size = [], 0
            yield packet
            continue
        group.append(packet)
        size += packet.size
    yield from group


def _needed(
    group: list[VideoPacket],
    end: Fraction | None,
    avc: AvcPackets,
    seconds: Callable[[int], Fraction],
    last_target: Callable[[Fraction], Fraction | None],
) -> list[VideoPacket]:
    if end is None or any(packet.pts is None for packet in group):
        return group
    target = last_target(end)
    times = [seconds(packet.pts) for packet in group]  # type: ignore[arg-type]  # checked above
    if target is None:
        return group[:1]  # only the group's first picture, which a sample before it may take
    candidates = [t for t, packet in zip(times, group, strict=True) if t >= target and avc.is_reference(bytes(packet))]
    if not candidates:
        return group
    chosen = min(candidates)
    last = max(n for n, t in enumerate(times) if t <= chosen)
    return group[: last + 1]
