"""`python -m bench ocr`: the project's OCR beside Tesseract on the same pages.

Pages, in four groups:
- `english`: generated invoices (tests/vision/ocr/invoice_gen.py) in the Latin layouts, clean
  and scan damage;
- `chinese`: generated fapiao layouts, clean and scan damage;
- `photos`: generated invoices of both scripts with photo damage (rotation, perspective,
  lighting, blur, JPEG);
- `pdf-150`, `pdf-200`: the real born-digital PDFs of tests/data/invoices/real (not their `-scan`
  copies), rendered with pdfium at 150 and 200 dpi.

Truth text: for a generated page, every string the generator draws on it (`Canvas.text`,
recorded while the invoice is generated); for a PDF page, the page's own text layer (pdfium).

Both engines read the same image, interleaved page by page, in one process, our engine warm
(one untimed page first). Ours: `vision.ocr.engine.OcrEngine(threads=N)` in this process;
seconds are wall clock around `read`, CPU seconds are `time.process_time()` (all threads of the
process). Tesseract: Debian's `tesseract` CLI on a PNG of the page, `--psm 3`, the page's language
pack (`eng`, `chi_sim`, `deu`, `fra`, `nld`, ...), `OMP_THREAD_LIMIT=N`; one process a page, as
OCRmyPDF runs it; CPU seconds from the children's rusage. Both texts are scored the same way:
character error rate (rapidfuzz Levenshtein distance / truth length) after normalising reading
order: NFKC, casefold, every CJK character its own token, tokens sorted.

Setup (not in requirements.txt): `tesseract-ocr` with the language packs, and `rapidfuzz`;
`--setup` installs both (apt-get when root, pip into this interpreter), else the bench prints
the commands. On a loaded machine compare CPU seconds, not wall seconds.

Parts: ocr_pages.py (the pages and their truth), ocr_engines.py (both engines, their setup, the
CER); this module runs them and writes the report.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from .common import RunInfo, git_commit, machine_description, md_table, write_results
from .ocr_engines import TESS_LANG, cer, ensure_setup, normalise, run_ours, run_tesseract
from .ocr_pages import GROUPS, collect_pages


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=32, help="first generator seed")
    p.add_argument("--groups", default=",".join(GROUPS), help="comma-separated: " + ", ".join(GROUPS))
    p.add_argument("--pdf-pages", type=int, default=1, help="pages per real PDF (from the first)")
    p.add_argument("--limit", type=int, default=0, help="at most this many pages in all (a smoke run)")
    p.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime intra-op threads and OMP_THREAD_LIMIT"
    )
    p.add_argument("--rounds", type=int, default=1, help="times each page is read by each engine")
    p.add_argument("--no-tesseract", action="store_true", help="our engine only")
    p.add_argument(
        "--setup", action="store_true", help="install tesseract (apt-get, as root) and rapidfuzz (pip)"
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--tag", default="")


# -- the run --------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _ppm(seconds: list[float]) -> float | None:
    return round(60 * len(seconds) / sum(seconds), 1) if seconds and sum(seconds) > 0 else None


def run(args: argparse.Namespace) -> int:
    groups = {g.strip() for g in args.groups.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        raise SystemExit(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    use_tess = not args.no_tesseract

    pages = collect_pages(args.seed, groups, args.pdf_pages, args.limit)
    if not pages:
        raise SystemExit("no pages: check --groups")
    ensure_setup(args.setup, use_tess, {p.language for p in pages})

    from vision.ocr.engine import OcrEngine

    info = RunInfo(command="python -m bench ocr " + " ".join(args.argv[1:]))
    info.git_commit = git_commit()
    info.machine = machine_description()
    engine = OcrEngine(threads=args.threads)
    engine.read(pages[0].image)  # loads the three sessions: not what a page costs
    settings = dict(getattr(engine, "settings", {}) or {})
    tess_version = ""
    if use_tess:
        tess_version = subprocess.run(
            ["tesseract", "--version"], capture_output=True, text=True
        ).stdout.split("\n")[0]

    per_page = []
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        for index, page in enumerate(pages):
            ours_wall, ours_cpu, stage_rows = [], [], []
            tess_wall, tess_cpu = [], []
            ours_text = tess_text = ""
            png = Path(tmp) / f"page{index}.png"
            page.image.save(png)
            for _ in range(args.rounds):
                ours_text, wall, cpu, stages = run_ours(engine, page.image)
                ours_wall.append(wall)
                ours_cpu.append(cpu)
                stage_rows.append(stages)
                if use_tess:
                    tess_text, wall, cpu = run_tesseract(png, page.language, args.threads)
                    tess_wall.append(wall)
                    tess_cpu.append(cpu)
            row = {
                "page": page.name,
                "group": page.group,
                "language": page.language,
                "size": list(page.image.size),
                "truth_chars": len(normalise(page.truth)),
                "ours_s": _median(ours_wall),
                "ours_cpu_s": _median(ours_cpu),
                "ours_stages_s": stage_rows[-1],
                "ours_cer": round(cer(ours_text, page.truth), 4),
                "tess_lang": TESS_LANG[page.language] if use_tess else None,
                "tess_s": _median(tess_wall),
                "tess_cpu_s": _median(tess_cpu),
                "tess_cer": round(cer(tess_text, page.truth), 4) if use_tess else None,
            }
            per_page.append(row)
            print(
                f"[ocr] {page.name:<40} ours {row['ours_s']:.2f} s (cpu {row['ours_cpu_s']:.2f}) "
                f"cer {row['ours_cer']:.3f}"
                + (
                    f" | tesseract {row['tess_s']:.2f} s (cpu {row['tess_cpu_s']:.2f}) cer {row['tess_cer']:.3f}"
                    if use_tess
                    else ""
                ),
                flush=True,
            )
    info.finish()

    def summarise(rows: list[dict]) -> dict:
        out = {"pages": len(rows)}
        for side in ("ours", "tess"):
            wall = [r[f"{side}_s"] for r in rows if r[f"{side}_s"] is not None]
            out[side] = {
                "s_median": _median(wall),
                "cpu_s_median": _median([r[f"{side}_cpu_s"] for r in rows if r[f"{side}_cpu_s"] is not None]),
                "pages_per_min": _ppm(wall),
                "cer_median": _median([r[f"{side}_cer"] for r in rows if r[f"{side}_cer"] is not None]),
                "cer_mean": round(statistics.mean(r[f"{side}_cer"] for r in rows), 4)
                if rows and rows[0][f"{side}_cer"] is not None
                else None,
            }
        return out

    by_group = {
        g: summarise([r for r in per_page if r["group"] == g])
        for g in GROUPS
        if any(r["group"] == g for r in per_page)
    }
    overall = summarise(per_page)
    stage_names = sorted({k for r in per_page for k in r["ours_stages_s"]})
    stages = {
        k: _median([r["ours_stages_s"][k] for r in per_page if k in r["ours_stages_s"]]) for k in stage_names
    }
    summary = {
        "overall": overall,
        "groups": by_group,
        "ours_stage_s_median": stages,
        "met_speed": use_tess
        and overall["ours"]["s_median"] is not None
        and overall["ours"]["s_median"] <= overall["tess"]["s_median"],
    }
    threads = {
        "onnxruntime_intra_op": args.threads,
        "omp_thread_limit_tesseract": args.threads,
        "engine_settings": settings,
        "cpu_count": os.cpu_count(),
    }

    def fmt(v: float | None, spec: str = ".2f") -> str:
        return "–" if v is None else format(v, spec)

    group_rows = []
    for name, cell in [*by_group.items(), ("all", overall)]:
        o, t = cell["ours"], cell["tess"]
        group_rows.append(
            [
                name,
                cell["pages"],
                fmt(o["s_median"]),
                fmt(t["s_median"]),
                fmt(o["cpu_s_median"]),
                fmt(t["cpu_s_median"]),
                fmt(o["pages_per_min"], ".1f"),
                fmt(t["pages_per_min"], ".1f"),
                fmt(o["cer_median"], ".3f"),
                fmt(t["cer_median"], ".3f"),
                fmt(o["cer_mean"], ".3f"),
                fmt(t["cer_mean"], ".3f"),
            ]
        )
    lines = [
        "# OCR: ours (RapidOCR on ONNX Runtime) beside Tesseract",
        "",
        f"{len(per_page)} pages (generated invoices seed {args.seed}: English, Chinese fapiao, photos; real "
        f"born-digital PDFs rendered at 150/200 dpi, {args.pdf_pages} page(s) each), read by both engines "
        f"interleaved in one process, {args.rounds} round(s), median per page. Ours: `OcrEngine(threads="
        f"{args.threads})` ({', '.join(f'{k}={v}' for k, v in settings.items()) or 'default settings'}). "
        f"Tesseract: {tess_version or 'not run'}, `--psm 3`, the page's language pack, "
        f"`OMP_THREAD_LIMIT={args.threads}`, one process per page. CER = Levenshtein distance / truth "
        "length after NFKC, casefold, CJK characters split, tokens sorted (reading order removed).",
        "",
        f"**Median seconds per page: ours {fmt(overall['ours']['s_median'])}, Tesseract "
        f"{fmt(overall['tess']['s_median'])}** (CPU seconds {fmt(overall['ours']['cpu_s_median'])} vs "
        f"{fmt(overall['tess']['cpu_s_median'])}); goal ours <= Tesseract: "
        f"{'met' if summary['met_speed'] else 'missed'}.",
        "",
        md_table(
            [
                "group",
                "pages",
                "ours s",
                "tess s",
                "ours cpu s",
                "tess cpu s",
                "ours pages/min",
                "tess pages/min",
                "ours CER med",
                "tess CER med",
                "ours CER mean",
                "tess CER mean",
            ],
            group_rows,
        ),
        "",
        "Our stages, median seconds per page: "
        + (", ".join(f"{k} {v:.3f}" for k, v in stages.items() if v is not None) or "not reported"),
        "",
        "## Pages",
        "",
        md_table(
            [
                "page",
                "group",
                "size",
                "ours s",
                "ours cpu s",
                "ours CER",
                "tess lang",
                "tess s",
                "tess cpu s",
                "tess CER",
            ],
            [
                [
                    r["page"],
                    r["group"],
                    f"{r['size'][0]}x{r['size'][1]}",
                    fmt(r["ours_s"]),
                    fmt(r["ours_cpu_s"]),
                    fmt(r["ours_cer"], ".3f"),
                    r["tess_lang"] or "–",
                    fmt(r["tess_s"]),
                    fmt(r["tess_cpu_s"]),
                    fmt(r["tess_cer"], ".3f"),
                ]
                for r in per_page
            ],
        ),
        "",
        f"Threads: ONNX Runtime intra-op {args.threads}, Tesseract OMP_THREAD_LIMIT {args.threads}, "
        f"{os.cpu_count()} logical CPUs. Load average {info.loadavg_start} → {info.loadavg_end}; "
        f"commit {info.git_commit}; {info.duration_s} s.",
    ]
    markdown = "\n".join(lines)
    data = {
        "run": info.to_dict(),
        "threads": threads,
        "tesseract": tess_version,
        "summary": summary,
        "pages": per_page,
    }
    json_path, md_path = write_results("ocr", args.tag, data, markdown, args.out)
    print(markdown)
    print(f"\nwrote {json_path} and {md_path}")
    return 0
