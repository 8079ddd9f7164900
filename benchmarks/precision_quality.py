"""Quality per minute of fp32 against bf16: the study's own runs in both precisions, paired by seed.

    VAELAB_DATA_DIR=../shared/data python benchmarks/precision_quality.py                # seeds 0-2, 4m each
    python benchmarks/precision_quality.py --seeds 0,1 --dataset mnist-sample --out /tmp/precision

For each seed and each of the study's models (AE, VAE), the study's exact run (`vaelab compare`'s fast
preset: the LayerNorm MLP, its per-model rates, the study's time budget) trains twice side by side, once
in fp32 and once in bf16, one single-threaded process per core as `vaelab compare` runs its AE and VAE,
so the two precisions share the machine's speed. Each precision's AE and VAE of a seed are then measured
by `vaelab compare --runs` (reconstruction accuracy, 5-NN accuracy of the codes), and the last epoch's
test loss comes from metrics.jsonl. Prints a table of both and the paired differences, and writes JSON;
it never asserts on time. bf16 that is not native (an AVX2 CPU) is emulated and slow: measure it where
`precision auto` would pick it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

PRECISIONS = ("fp32", "bf16")
MODELS = ("ae", "vae")
DEFAULT_JSON = Path(__file__).parent / "results" / "precision_quality.json"


def measured(run: Path, report: Path) -> dict:
    """One run's steps, reconstruction and 5-NN accuracy (from the report) and last test loss."""
    study = json.loads((report / "metrics.json").read_text())
    entry = next(r for r in study["runs"] if Path(r["path"]).name == run.name)
    last = json.loads(run.joinpath("metrics.jsonl").read_text().splitlines()[-1])
    return {"steps": entry["steps"], "reconstruction_accuracy": entry["metrics"]["samples"]["reconstruction_accuracy"],
            "knn_accuracy": entry["metrics"]["latent"]["knn_accuracy"], "test_loss": last["test"]["loss"]}


def paired(rows: list[dict]) -> dict:
    """bf16 minus fp32 for each model, measure and seed, with the mean and how many pairs favour bf16."""
    out = {}
    for model in MODELS:
        for key, better in (("steps", 1), ("reconstruction_accuracy", 1), ("knn_accuracy", 1), ("test_loss", -1)):
            by = {(r["seed"], r["precision"]): r[key] for r in rows if r["model"] == model}
            seeds = sorted({seed for seed, _ in by if (seed, "fp32") in by and (seed, "bf16") in by})
            diffs = [by[seed, "bf16"] - by[seed, "fp32"] for seed in seeds]
            if diffs:
                out[f"{model}.{key}"] = {"differences": diffs, "mean": statistics.mean(diffs),
                                         "bf16_better": sum(better * d > 0 for d in diffs), "pairs": len(diffs)}
    return out


def table(rows: list[dict], pairs: dict) -> str:
    lines = ["model  precision  seed    steps  reconstruction  5-NN    test loss"]
    for r in sorted(rows, key=lambda r: (r["model"], r["precision"] != "fp32", r["seed"])):
        lines.append(f"{r['model']:<6} {r['precision']:<10} {r['seed']:>4} {r['steps']:>8,} "
                     f"{r['reconstruction_accuracy']:>15.4f} {r['knn_accuracy']:>7.4f} {r['test_loss']:>12.5g}")
    lines.append("")
    lines.append("bf16 - fp32 (paired by seed)          mean   bf16 better in")
    for name, p in pairs.items():
        lines.append(f"{name:<34} {p['mean']:>+10.4g}   {p['bf16_better']} of {p['pairs']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", help="folder with the dataset's IDX files (default: $VAELAB_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=Path("precision-quality"), help="folder for the runs and reports")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    import vaelab
    from vaelab.compare import study_configs
    from vaelab.data import load_dataset
    from vaelab.train.parallel import train_many

    n_train = len(load_dataset(args.dataset, args.data_dir).train_images)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        options = {"dataset": args.dataset, "data_dir": args.data_dir, "seed": seed}
        configs = dict(study_configs("fast", options, n_train))
        for model in MODELS:  # fp32 and bf16 of one model side by side: they share the machine's speed
            jobs = [(f"{model}-{p}-s{seed}", configs[model].replace(train={"precision": p}),
                     args.out / f"{model}-{p}-s{seed}") for p in PRECISIONS]
            train_many([job for job in jobs if not job[2].exists()], 2, 1, show_progress=False)
        for precision in PRECISIONS:
            runs = [args.out / f"{model}-{precision}-s{seed}" for model in MODELS]
            report = args.out / f"compare-{precision}-s{seed}"
            if not report.exists():
                vaelab.compare(runs, report, data_dir=args.data_dir, show_progress=False)
            for model, run in zip(MODELS, runs):
                rows.append({"model": model, "precision": precision, "seed": seed, **measured(run, report)})
    pairs = paired(rows)
    print(table(rows, pairs))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "paired": pairs, "command": sys.argv}, indent=1))


if __name__ == "__main__":
    main()
