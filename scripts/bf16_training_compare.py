#!/usr/bin/env python3
"""Training in bf16 against float32 (issue 23): two `haze train` runs of the same recipe and seed, one
with --precision bf16, compared by their loss curves and by the FID of their raw and EMA weights.

    python3 scripts/bf16_training_compare.py --f32 RUN_F32 --bf16 RUN_BF16 \\
        --svg Documentation/figures/bf16-training-loss.svg

Each RUN is a run folder with metrics.jsonl logged every step (--log-every 1) and, optionally,
RUN/eval-raw.json and RUN/eval-ema.json from `haze evaluate --json` (or pass --f32-evals / --bf16-evals
RAW EMA). Prints a Markdown table (mean loss of the last 200 and 500 steps, FID and KID of each
weight set, the ratios) and writes the two loss curves (moving average over --window steps) as SVG.
Standard library only.
"""
import argparse
import json
import os


def losses(run):
    values = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record and "step" in record:
                values[record["step"]] = record["loss"]
    return [values[s] for s in sorted(values)]


def moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def evals(paths):
    result = []
    for path in paths:
        if path and os.path.exists(path):
            with open(path) as f:
                result.append(json.load(f))
        else:
            result.append(None)
    return result


def svg(curves, path, window):
    width, height, left, right, top, bottom = 720, 360, 60, 20, 20, 45
    steps = max(len(c) for _, c, _ in curves)
    low = min(min(c[window:] or c) for _, c, _ in curves) * 0.9
    high = max(max(c[window:] or c) for _, c, _ in curves) * 1.1
    def px(i):
        return left + i / max(steps - 1, 1) * (width - left - right)
    def py(v):
        return top + (high - v) / (high - low) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
           f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">training step</text>',
           f'<text x="14" y="{(top + height - bottom) / 2}" transform="rotate(-90 14 {(top + height - bottom) / 2})" '
           f'text-anchor="middle">loss (moving average of {window} steps)</text>']
    for k in range(5):
        v = low + (high - low) * k / 4
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{width - right}" y2="{py(v):.1f}" stroke="#ddd"/>')
    for k in range(5):
        i = round((steps - 1) * k / 4)
        out.append(f'<text x="{px(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{i + 1}</text>')
    for n, (name, curve, colour) in enumerate(curves):
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(curve) if i >= window // 2)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        out.append(f'<line x1="{width - right - 150}" y1="{top + 14 + 16 * n}" x2="{width - right - 130}" y2="{top + 14 + 16 * n}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right - 124}" y="{top + 18 + 16 * n}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--f32", required=True, help="the float32 run folder")
    parser.add_argument("--bf16", required=True, help="the bf16 run folder")
    parser.add_argument("--f32-evals", nargs=2, metavar=("RAW", "EMA"), help="haze evaluate JSONs of the f32 run")
    parser.add_argument("--bf16-evals", nargs=2, metavar=("RAW", "EMA"), help="haze evaluate JSONs of the bf16 run")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--svg", help="write the loss curves here")
    args = parser.parse_args()
    runs = {"f32": args.f32, "bf16": args.bf16}
    curves = {name: losses(run) for name, run in runs.items()}
    scored = {name: evals(given or [os.path.join(run, "eval-raw.json"), os.path.join(run, "eval-ema.json")])
              for (name, run), given in zip(runs.items(), [args.f32_evals, args.bf16_evals])}
    print("| run | steps | loss, last 200 | loss, last 500 | FID raw | FID EMA | KID raw | KID EMA |")
    print("|---|---|---|---|---|---|---|---|")
    for name, curve in curves.items():
        raw, ema = scored[name]
        def fid(e):
            return f"{e['fid']:.2f}" if e else "–"
        def kid(e):
            return f"{e['kid_mean']:.2f} ± {e['kid_std']:.2f}" if e else "–"
        print(f"| {name} | {len(curve)} | {sum(curve[-200:]) / len(curve[-200:]):.4f} | {sum(curve[-500:]) / len(curve[-500:]):.4f} | "
              f"{fid(raw)} | {fid(ema)} | {kid(raw)} | {kid(ema)} |")
    if all(all(scored[n]) for n in scored):
        print("\nbf16 / f32: FID raw {:.3f}, FID EMA {:.3f}".format(scored["bf16"][0]["fid"] / scored["f32"][0]["fid"],
                                                                 scored["bf16"][1]["fid"] / scored["f32"][1]["fid"]))
    if args.svg:
        svg([("float32", moving_average(curves["f32"], args.window), "#1f77b4"),
             ("bf16", moving_average(curves["bf16"], args.window), "#d62728")], args.svg, args.window)
        print(f"wrote {args.svg}")


if __name__ == "__main__":
    main()
