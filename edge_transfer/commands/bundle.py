"""``edge-transfer bundle RUN --out DIR [--tar]``: a deploy bundle of a run's exported models."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bundle", help="pack the exported models of a run into a verified deploy bundle",
        description="Copy the status-ok artifacts of RUN/export/export.json into DIR with a "
                    "manifest.json (sha256 of every file, labels, preprocessing, workstation "
                    "accuracy) and validation.npz (the run's test split).",
    )
    parser.add_argument("run", help="run directory (made by `edge-transfer finetune`)")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--export-dir", default=None,
                        help="folder holding export.json (default RUN/export)")
    parser.add_argument("--tar", action="store_true", help="also write DIR.tar.gz")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_transfer.bundle import MANIFEST, create_bundle, open_bundle

    path = create_bundle(args.run, args.out, export_dir=args.export_dir, tar=args.tar)
    bundle = open_bundle(args.out)
    for artifact in bundle.artifacts:
        print(f"{artifact.name:<20} {artifact.bytes:>10,} bytes  workstation accuracy "
              f"{artifact.workstation_accuracy:.4f}")
    print(f"wrote {path}" + ("" if args.tar else f" ({MANIFEST} + {len(bundle.artifacts)} models)"))
    return 0
