"""Command line: ``python -m h2o_tasks render-manifests|validate …``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from h2o_tasks import config
from h2o_tasks.errors import H2OTasksError


def render_manifests(args: argparse.Namespace) -> int:
    from h2o_tasks.cluster import manifests
    from h2o_tasks.cluster.base import ClusterSpec

    cfg = config.load(args.config).with_overrides(cluster={"backend": "kubernetes", **({"namespace": args.namespace}
                                                                                      if args.namespace else {})})
    spec = ClusterSpec.for_run(cfg.name, args.dag_id, args.run_id, cfg.cluster, s3_endpoint=args.s3_endpoint)
    for path in manifests.write(manifests.render(spec), Path(args.out)):
        print(path)
    return 0


def validate(args: argparse.Namespace) -> int:
    for path in args.configs:
        cfg = config.load(path)
        print(f"{path}: ok ({cfg.name}: {len(cfg.features)} features, {cfg.source.kind} source, "
              f"{cfg.cluster.backend} cluster of {cfg.cluster.replicas})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m h2o_tasks")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render-manifests", help="write the Kubernetes objects the backend would apply")
    r.add_argument("--config", required=True, help="pipeline YAML file")
    r.add_argument("--run-id", required=True, help="the Airflow run id the cluster is for")
    r.add_argument("--dag-id", default="", help="the DAG id (default: the training DAG of the pipeline)")
    r.add_argument("--out", required=True, help="directory to write one file per object into")
    r.add_argument("--namespace", default="", help="override cluster.namespace")
    r.add_argument("--s3-endpoint", default="", help="S3 endpoint the nodes use (empty: AWS)")
    r.set_defaults(func=render_manifests)
    v = sub.add_parser("validate", help="validate pipeline files")
    v.add_argument("configs", nargs="+")
    v.set_defaults(func=validate)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "dag_id", None) == "":
            args.dag_id = f"h2o_train__{config.load(args.config).name}"
        return args.func(args)
    except H2OTasksError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
