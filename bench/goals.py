"""The goals for this CPU's row, the embedders under test (auto, int8, torch) and the targets they are held to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Target
from clipsearch.testing.processes import ServiceProcess, embedder_process
from embedder_service.inference import cpu_flags

# CPUs whose int8 and bf16 kernels the fast runtimes use (VNNI, AVX-512 BF16, AMX), as the goals' rows split them.
FAST_FLAGS = frozenset({"avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"})
TEXT_QUERY_GOAL = 0.6  # text query end to end p50, auto embedder / torch embedder, at most


@dataclass(frozen=True)
class GoalRow:
    """The ingest goals of one kind of CPU: `clipsearch index` against the seed loop and its model alone."""

    cpu: str
    int8_vs_seed: float
    auto_vs_seed: float
    index_vs_model: float = 0.70


AVX512_ROW = GoalRow("AVX-512 BF16+VNNI (or AMX)", 3.5, 2.8)
AVX2_ROW = GoalRow("AVX2 only", 2.0, 1.4)


def goal_row(flags: frozenset[str] | None = None) -> GoalRow:
    """The row of the goals table this CPU falls in, from its /proc/cpuinfo flags."""
    return AVX512_ROW if (cpu_flags() if flags is None else flags) & FAST_FLAGS else AVX2_ROW


@dataclass(frozen=True)
class Variant:
    """An embedder setting under test: EMBEDDER_RUNTIME and EMBEDDER_DTYPE."""

    name: str
    runtime: str
    dtype: str


AUTO = Variant("auto", "auto", "auto")
INT8 = Variant("int8", "auto", "int8")
TORCH = Variant("torch", "torch", "auto")  # the text query's reference


def variant_embedder(variant: Variant, model: Path, workdir: Path, threads: int) -> ServiceProcess:
    """Another embedder process over the same checkpoint for `variant`, started and serving."""
    service = embedder_process(
        f"embedder-{variant.name}",
        str(model),
        workdir,
        threads=threads,
        dtype=variant.dtype,
        extra={"EMBEDDER_RUNTIME": variant.runtime},
    )
    return service.start().wait_serving()


def ingest_targets(ingest: dict[str, Any], row: GoalRow) -> list[Target]:
    """PNG ingest against the goals of this CPU's row; the ceiling (model alone / seed) goes in each note."""
    png = ingest.get("png")
    if not png:
        return []
    found = []
    for name, goal in (("int8", row.int8_vs_seed), ("auto", row.auto_vs_seed)):
        figures = png.get(name)
        if not figures:
            continue
        ceiling = f"ceiling {figures['ceiling_vs_seed']}x (its model alone / seed loop)"
        found.append(
            Target(f"ingest PNG, {name}: clipsearch index / seed loop", figures["pipeline_vs_seed"], goal, note=ceiling)
        )
        found.append(
            Target(
                f"ingest PNG, {name}: clipsearch index / its model alone",
                figures["pipeline_vs_model"],
                row.index_vs_model,
                note=f"CPU-time view {figures['cpu_pipeline_vs_model']}",
            )
        )
    return found


def text_query_target(query: dict[str, Any]) -> list[Target]:
    found = []
    for items, figures in query.items():
        if figures.get("text_auto_vs_torch_p50") is not None:
            found.append(
                Target(
                    f"query {items}: text end to end p50, auto / torch embedder",
                    figures["text_auto_vs_torch_p50"],
                    TEXT_QUERY_GOAL,
                    upper_bound=True,
                    note=f"ceiling {figures['text_model_auto_vs_torch']} (the text tower alone, auto / torch)",
                )
            )
    return found


def ingest_rows(ingest: dict[str, Any], add: Any) -> None:
    """The ingest lines of the table: the seed loop, each variant's index and model alone, their ratios."""
    for kind in ("png", "jpeg"):
        f = ingest[kind]
        what = f"{kind.upper()} {f['width']}x{f['height']} x{f['files']}"
        add(
            f"{what}: seed loop (torch fp32, batch 1), img/s and CPU ms/img",
            f"{f['seed_img_s']} img/s, {f['seed_cpu_ms']} ms (median of {ingest['rounds']} rounds)",
        )
        for name in ingest["variants"]:
            v = f[name]
            add(
                f"{what}, {name} ({v['runtime']} {v['dtype']}): img/s model alone (bs {ingest['model_batch']}) "
                "/ clipsearch index, marginal (whole run)",
                f"{v['model_img_s']} / {v['pipeline_img_s']} ({v['run_img_s']}); CPU ms/img {v['model_cpu_ms']} / "
                f"{v['pipeline_cpu_ms']}",
            )
            add(
                f"{what}, {name}: index / seed, index / model alone, ceiling (model alone / seed)",
                f"{v['pipeline_vs_seed']}x, {v['pipeline_vs_model']}, {v['ceiling_vs_seed']}x "
                f"(model bs 1: {v['model_bs1_img_s']} img/s)",
            )
        add(
            f"{what}: CPU ms per file to decode+shrink, client (of it decoding) / seed",
            f"{f['client_prepare_cpu_ms']} ({f['client_decode_cpu_ms']}) / {f['seed_prepare_cpu_ms']}",
        )
