"""``edge-transfer bundle RUN --out DIR [--tar] [--samples N|all] [--for PROFILE]``: a deploy
bundle of a run's exported models."""

from __future__ import annotations

import argparse
import time

HELP = "pack the exported models of a run into a verified deploy bundle"
DESCRIPTION = ("Copy the status-ok artifacts of RUN/export/export.json into DIR with a "
               "manifest.json (sha256 of every file, labels, preprocessing, workstation "
               "accuracy and predictions: export.json's when they are the same file's on "
               "the same images, else measured) and validation.npz (a stratified sample "
               "of the run's test split, its positions in the manifest).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_transfer.deploy.bundle import DEFAULT_SAMPLES

    parser.add_argument("run", help="run directory (made by `edge-transfer finetune`)")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--export-dir", default=None,
                        help="folder holding export.json (default RUN/export)")
    parser.add_argument("--tar", action="store_true", help="also write DIR.tar.gz")
    parser.add_argument("--samples", default=None, metavar="N|all",
                        help=f"test images in the validation sample, stratified by class "
                             f"(default {DEFAULT_SAMPLES:,}: what a paired test needs to "
                             "resolve the 0.5-pt tolerance; all: the whole test split)")
    parser.add_argument("--for", dest="profile", default=None, metavar="PROFILE",
                        help="ship only the files this device profile (name or .toml) can "
                             "use, and mark the one to deploy in the manifest")


def run(args: argparse.Namespace) -> int:
    from edge_transfer.deploy.bundle import (
        DEFAULT_SAMPLES,
        MANIFEST,
        BundleOptions,
        create_bundle,
        open_bundle,
    )
    from edge_transfer.deploy.sample import parse_samples

    samples = DEFAULT_SAMPLES if args.samples is None else parse_samples(args.samples)
    if args.profile:
        from devices.deploy import bundle_options_for
        from devices.profile import load_profile

        options = bundle_options_for(load_profile(args.profile), samples, progress=print)
    else:
        options = BundleOptions(samples=samples, progress=print)
    start = time.perf_counter()
    path = create_bundle(args.run, args.out, export_dir=args.export_dir, tar=args.tar,
                         options=options)
    seconds = time.perf_counter() - start
    bundle = open_bundle(args.out)
    manifest = bundle.manifest
    for artifact in manifest.artifacts:
        print(f"{artifact.name:<20} {artifact.bytes:>10,} bytes  workstation accuracy "
              f"{artifact.workstation_accuracy:.4f}")
    for name, why in manifest.left_out.items():
        print(f"{name:<20} left out: {why}")
    sample = bundle.path / manifest.validation_sample
    count = manifest.samples.count if manifest.samples else 0
    print(f"validation sample: {count:,} of {manifest.split_samples or count:,} test images "
          f"(stratified), {sample.stat().st_size:,} bytes")
    if manifest.recommendation:
        rec = manifest.recommendation
        print(f"recommended for {manifest.profile}: {rec.reason}\n  ({rec.basis})")
        for line in rec.trades:
            print(f"  {line}")
    print(f"wrote {path} in {seconds:.1f} s"
          + ("" if args.tar else f" ({MANIFEST} + {len(manifest.artifacts)} models)"))
    return 0
