"""Command line: ``python -m h2o_tasks render-manifests|validate|schema|hive-udf|registry …``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from h2o_tasks import config
from h2o_tasks.errors import ConfigError, H2OTasksError


def render_manifests(args: argparse.Namespace) -> int:
    from h2o_tasks.cluster import manifests
    from h2o_tasks.cluster.base import ClusterSpec

    cfg = config.load(args.config).with_overrides(cluster={"backend": "kubernetes", **({"namespace": args.namespace}
                                                                                      if args.namespace else {})})
    spec = ClusterSpec.for_run(cfg.name, args.dag_id, args.run_id, cfg.cluster, s3_endpoint=args.s3_endpoint)
    for path in manifests.write(manifests.render(spec), Path(args.out)):
        print(path)
    return 0


def _pipeline_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


def validate(args: argparse.Namespace) -> int:
    """Every problem of every file (a directory: its *.yaml), cheap checks then H2O's own parameter
    checks; exit status 1 if any. Made for a repository's CI and for pre-commit."""
    files = _pipeline_files(args.configs)
    if not files:
        print(f"error: no pipeline files (*.yaml) in {' '.join(args.configs)}", file=sys.stderr)
        return 2
    bad = 0
    for path in files:
        cfg, errors = config.check_file(path)
        if not args.cheap:  # H2O's checks too, even where the cheap ones found problems: every problem at once
            from h2o_tasks.estimator_checks import pipeline_problems, raw_problems

            deep = pipeline_problems(cfg) if cfg is not None else raw_problems(str(path))
            seen = {e.field for e in errors}
            errors = [*errors, *(e for e in deep if e.field not in seen)]
        bad += bool(errors)
        for error in errors:
            print(f"{path}: {error.field} = {error.value!r}: {error.problem}. Fix: {error.fix}")
        if not errors:
            print(f"{path}: ok ({cfg.name}: {len(cfg.features)} features, {cfg.target.problem}, {cfg.source.kind} "
                  f"source, {cfg.cluster.backend} cluster of {cfg.cluster.replicas})")
    if bad:
        print(f"{bad} of {len(files)} pipeline file(s) have problems", file=sys.stderr)
    return 1 if bad else 0


def schema(args: argparse.Namespace) -> int:
    """The pipeline file's JSON Schema, or its table of fields in Markdown."""
    import json

    text = config.fields_table() if args.markdown else json.dumps(config.json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def hive_udf_command(args: argparse.Namespace) -> int:
    """Build the Hive UDF jar into ``--out``, and print how to register it."""
    from h2o_tasks import hive_udf

    if args.maven:
        jar = hive_udf.build_with_maven(args.out)
    else:
        jar = hive_udf.build(args.out, [Path(p) for p in args.classpath.split(":")] if args.classpath else None)
    print(jar)
    print("-- in Beeline (the champion's model.zip and h2o-genmodel.jar from its registry version):", file=sys.stderr)
    for sql in hive_udf.register_sql(jar, "/path/to/h2o-genmodel.jar"):
        print(f"{sql};", file=sys.stderr)
    return 0


def _registry_uri(args: argparse.Namespace) -> str:
    if args.registry_uri:
        return args.registry_uri.rstrip("/")
    if args.config:
        return config.load(args.config).registry_uri
    raise ConfigError("--registry-uri", None, "is required (or --config)",
                             "pass --registry-uri s3://BUCKET/PREFIX or --config PIPELINE.yaml")


def registry_command(args: argparse.Namespace) -> int:
    """List versions, show the promotion history, or roll the champion back (by compare-and-swap)."""
    import json

    from h2o_tasks import registry
    from h2o_tasks.s3 import S3Settings

    uri = _registry_uri(args)
    # credentials from boto3's own chain (environment, profile, instance or web identity)
    client = S3Settings(endpoint_url=args.endpoint_url or "").client()
    champion = registry.read_champion(client, uri)
    if args.action == "list":
        rows = registry.list_versions(client, uri)
        if args.json:
            print(json.dumps([{**r.__dict__, "champion": bool(champion and r.version == champion.version)} for r in rows]))
            return 0
        for r in rows:
            mark = "*" if champion and r.version == champion.version else " "
            state = "complete" if r.complete else "INCOMPLETE (no metadata.json: an export that did not finish)"
            metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(r.metrics.items()) if isinstance(v, (int, float)))
            print(f"{mark} {r.version}  {state}  {r.interval}  {metrics}".rstrip())
        return 0
    if args.action == "history":
        records = registry.history(client, uri)
        if args.json:
            print(json.dumps([p.to_dict() for p in records]))
            return 0
        for p in records:
            print(f"{p.generation:>4}  {p.promoted_at}  {p.action:<8}  {p.version}  {p.metric}={p.value}  "
                  f"interval end {p.interval_end}  previous {p.previous}  {p.reason}")
        return 0
    pointer = registry.rollback(client, uri, args.to or None, reason=args.reason)
    print(json.dumps(pointer.to_dict()) if args.json else
          f"champion is now {pointer.version} (generation {pointer.generation}, was {pointer.previous})")
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
    v = sub.add_parser("validate", help="check pipeline files: every problem of every file, exit 1 if any")
    v.add_argument("configs", nargs="+", help="pipeline YAML files, or directories of them")
    v.add_argument("--cheap", action="store_true", help="only the checks DAG parsing runs (no H2O import)")
    v.set_defaults(func=validate)
    m = sub.add_parser("schema", help="print the pipeline file's JSON Schema (or its fields as Markdown)")
    m.add_argument("--markdown", action="store_true", help="the README's table of fields instead")
    m.add_argument("--out", default="", help="write to this file instead of standard output")
    m.set_defaults(func=schema)
    u = sub.add_parser("hive-udf", help="build the Hive UDF h2o_predict (any MOJO, by path)")
    u.add_argument("action", choices=("build",))
    u.add_argument("--out", required=True, help="directory to write h2o-hive-udf.jar into")
    u.add_argument("--maven", action="store_true", help="build with Maven from pom.xml (Maven Central's hive-exec "
                                                        "and h2o-genmodel) instead of javac")
    u.add_argument("--classpath", default="", help="javac: the Hive, Hadoop and h2o-genmodel jars (':'-separated; "
                                                   "default: pyspark's and the h2o package's)")
    u.set_defaults(func=hive_udf_command)
    g = sub.add_parser("registry", help="the model registry: list versions, show history, roll back the champion")
    g.add_argument("action", choices=("list", "history", "rollback"))
    g.add_argument("--registry-uri", default="", help="s3://BUCKET/PREFIX of the registry")
    g.add_argument("--config", default="", help="a pipeline YAML file (its registry_uri)")
    g.add_argument("--endpoint-url", default="", help="an S3-compatible endpoint (default: AWS, or AWS_ENDPOINT_URL)")
    g.add_argument("--to", default="", help="rollback: the version to make champion (default: the previous one)")
    g.add_argument("--reason", default="", help="rollback: why, recorded in the history")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=registry_command, dag_id=None)
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
