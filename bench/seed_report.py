"""Markdown (and chart) of the seed-table / decode-floor results, from their JSON alone, so a layout change
can be re-rendered without re-running hours of benchmarks (`python -m bench render <json>`)."""

from __future__ import annotations

import json
from pathlib import Path

from . import chart
from .common import TARGETS, RunInfo, machine_markdown, md_table, run_markdown, verdict
from .runs import format_label


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.0f} %"


def rerender(json_path: Path) -> None:
    """Markdown (and chart) again from a results JSON, e.g. after improving the report layout."""
    data = json.loads(json_path.read_text())
    json_path.with_suffix(".md").write_text(render_markdown(data).rstrip() + "\n")
    if any(r["baseline"] for r in data["rows"]):
        chart.seed_chart(data, json_path.with_suffix(".png"))
    print(f"[bench] rewrote {json_path.with_suffix('.md')}")


def render_markdown(data: dict) -> str:
    run, machine = data["run"], data["run"]["machine"]
    out = [f"# {'Seed table' if data['rows'] else 'Decode vs the bandwidth floor'}", ""]
    out += [machine_markdown(machine), "", _run_md(run), ""]
    phases = {p["dtype"]: p for p in data["phases"]}
    rows = data["rows"]
    if rows and any(r["baseline"] for r in rows):
        headline_dtype = "auto" if "auto" in phases else next(iter(phases), None)
        fmt = format_label(phases[headline_dtype]["formats"]) if headline_dtype else "-"
        out += [
            f"## Baseline vs ours (engine default formats: `{headline_dtype}` = {fmt})",
            "",
            "Baseline = the article's recipe on this machine: transformers `generate`, fp32, the processor's "
            "default pixels, one request at a time. *Same pixels* gives our engine the baseline's image "
            "size (pure engine speed); *our defaults* uses our per-task pixel budget (what a user gets; "
            "image tokens beside it). Ratios are baseline / ours (higher is better).",
            "",
        ]
        body = []
        for r in rows:
            b = r["baseline"]
            ours = r["ours"].get(headline_dtype, {}) if headline_dtype else {}
            same, dflt = ours.get("same"), ours.get("defaults")
            body.append(
                [
                    f"{r['label']} {r['size']}",
                    r["tokens"],
                    r["article_s"],
                    b and b["e2e_s"],
                    b and b["ttft_s"],
                    b and b["image_tokens"],
                    same and same["e2e_s"],
                    same and f"**{same['speedup_e2e']}×**",
                    dflt and dflt["e2e_s"],
                    dflt and dflt["ttft_s"],
                    dflt and f"{dflt['image_tokens']} (vs {b['image_tokens'] if b else '?'})",
                    dflt and f"**{dflt['speedup_e2e']}×**",
                ]
            )
        out.append(
            md_table(
                [
                    "image",
                    "out tok",
                    "article s (12 cores)",
                    "baseline s",
                    "baseline TTFT s",
                    "baseline img tok",
                    "ours same px s",
                    "same-pixels ratio",
                    "ours defaults s",
                    "ours TTFT s",
                    "our img tok",
                    "our-defaults ratio",
                ],
                body,
            )
        )
        out.append("")
    if rows:
        out += ["## Every configuration", ""]
        body = []
        for r in rows:
            b = r["baseline"]
            if b:
                body.append(
                    [
                        r["label"],
                        "baseline (transformers)",
                        "fp32",
                        b["pixels"],
                        b["image_tokens"],
                        b["e2e_s"],
                        b["ttft_s"],
                        b["decode_tok_s"],
                        None,
                        None,
                        b["peak_rss_mib"],
                        None,
                    ]
                )
            for dtype, per_mode in r["ours"].items():
                for m in per_mode.values():
                    body.append(
                        [
                            r["label"],
                            f"ours ({dtype})",
                            m["dtype"],
                            m["pixels"],
                            m["image_tokens"],
                            m["e2e_s"],
                            m["ttft_s"],
                            m["decode_tok_s"],
                            m["vision_s"],
                            m["prefill_s"],
                            m["peak_rss_mib"],
                            m["speedup_e2e"] and f"{m['speedup_e2e']}×",
                        ]
                    )
        out.append(
            md_table(
                [
                    "image",
                    "side",
                    "formats",
                    "pixels",
                    "img tok",
                    "e2e s",
                    "TTFT s",
                    "decode tok/s",
                    "vision s",
                    "prefill s",
                    "peak RSS MiB",
                    "ratio e2e",
                ],
                body,
            )
        )
        out.append("")
        out.append(
            "Peak RSS is the whole process: in the fp32 phase it holds the one fp32 model shared by the "
            "baseline and our fp32 engine."
        )
        out.append("")
    decode_rows = [
        [
            p["dtype"],
            format_label(p["formats"]),
            p["decode"].get("weight_bytes_per_token", 0) / 1e9,
            p["decode"].get("bandwidth_gbs"),
            p["decode"].get("floor_s_per_token"),
            p["decode"].get("measured_s_per_token"),
            f"{p['decode'].get('floor_fraction', 0) * 100:.0f} %",
            verdict(p["decode"].get("floor_fraction"), TARGETS["decode_floor_fraction"]),
            _pct(p["decode"].get("floor_fraction_vs_best_bandwidth")),
            p["decode"].get("best_bandwidth_gbs", "–"),
            " / ".join(f"{r['floor_fraction'] * 100:.0f} %" for r in p["decode"].get("rounds", [])) or "–",
        ]
        for p in data["phases"]
        if p["decode"]
    ]
    if decode_rows:
        out += [
            "## Decode vs the physical floor",
            "",
            "Floor = weight bytes read per token (all decoder linears + lm_head in the LM's format) / the memory "
            "read bandwidth of the same moment. Rounds: three 512 MiB sums, one text-only stream at batch 1, "
            "three more sums (`bench/runs.py` `paired_decode`); a round's floor uses the median of its six "
            "sums, its measured s/token the median gap between tokens. *Of floor* = the median over rounds of "
            "floor / measured (100 % = at the floor; "
            f"target ≥ {TARGETS['decode_floor_fraction'] * 100:.0f} %). *vs best* = the same against the "
            "fastest sum of the whole run: this host's bursts make that the harshest reading.",
            "",
            md_table(
                [
                    "setting",
                    "formats",
                    "GB read / token",
                    "GB/s",
                    "floor s/tok",
                    "measured s/tok",
                    "of floor",
                    "target",
                    "vs best",
                    "best GB/s",
                    "rounds",
                ],
                decode_rows,
            ),
            "",
        ]
    out += ["## Load", ""]
    out.append(
        md_table(
            [
                "setting",
                "formats",
                "load s",
                "peak RSS while loading MiB",
                "RSS after load MiB",
                "RSS after gc + malloc_trim MiB",
            ],
            [
                [
                    p["dtype"],
                    format_label(p["formats"]),
                    p["load_s"],
                    p["load_peak_rss_mib"],
                    p.get("rss_loaded_mib"),
                    p.get("rss_trimmed_mib"),
                ]
                for p in data["phases"]
            ],
        )
    )
    out += [
        "",
        "Loading reads the bf16 checkpoint into fp32 and converts it; the gap between the last two columns is "
        "heap the engine leaves to glibc after conversion (a `malloc_trim(0)` after loading returns it).",
        "",
    ]
    head = data["targets"].get("end_to_end_speedup_geomean_auto_defaults")
    if head is not None:
        out += [
            "## Targets",
            "",
            f"- End to end at our defaults (auto formats, task pixel budget), geometric mean over rows: "
            f"**{head}×** vs target ≥ {TARGETS['end_to_end_speedup']}× → {verdict(head, TARGETS['end_to_end_speedup'])}.",
        ]
    return "\n".join(out)


def _run_md(run: dict) -> str:
    return run_markdown(RunInfo.from_dict(run))
