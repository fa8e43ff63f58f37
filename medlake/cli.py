"""The `medlake` command: generate sample data, run the pipeline, ask questions."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from medlake.config import ENV_VARS, get_settings


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from medlake.generate import generate

    settings = get_settings()
    with contextlib.ExitStack() as stack:
        # A landing zone on object storage gets the files uploaded from a scratch folder.
        landing = (Path(stack.enter_context(tempfile.TemporaryDirectory()))
                   if settings.landing_remote else settings.landing)
        with tqdm(total=args.patients, unit="patient", desc="generate") as bar:
            result = generate(landing, patients=args.patients, seed=args.seed,
                              bad_files=args.bad_files, ndjson=args.ndjson,
                              progress=lambda n: bar.update(1))
        if settings.landing_remote:
            from medlake.landing import publish

            publish(landing)
            landing = settings.landing_uri
    print(f"Wrote {result.patients} patients to {landing}: {result.fhir_files} FHIR files "
          f"({sum(result.fhir_resources.values())} resources), {result.dicom_files} DICOM "
          f"files, {result.vcf_files} VCF files ({result.variants} variants, "
          f"{result.samples} samples), {len(result.bad_files)} deliberately bad files.")
    return 0


def cmd_run(args) -> int:
    from medlake.pipeline import run

    report = run(show_progress=not args.quiet)
    width = max([len(t) for t in report.tables] + [len("vectors.clinical_chunks")])
    print(f"\n{'table':{width}}  {'version':>7}  {'rows':>8}  {'this run':>8}")
    for table, s in report.tables.items():
        print(f"{table:{width}}  {s['version']:>7}  {s['rows']:>8}  {s['change']:>+8}")
    print(f"{'vectors.clinical_chunks':{width}}  {'':>7}  {report.chunks:>8}  "
          f"{report.chunks_change:>+8}")
    quarantined = ", ".join(f"{m}: {n}" for m, n in report.quarantined.items()) or "none"
    print(f"\nQuarantined (bronze.quarantine): {quarantined}")
    print(f"Dagster run {report.run_id}; dbt output in {report.log_path}")
    for w in report.warnings:
        print(f"Warning: {w}; see its metadata in the Dagster UI or gold.dq_results.")
    if not report.success:
        print("\nThe run did not finish cleanly:", file=sys.stderr)
        for f in report.failures:
            print(f"  - {f}", file=sys.stderr)
        print("Open the run in the Dagster UI (`dagster dev`) for the full logs, fix the "
              "cause, and run `medlake run` again: finished work is kept.", file=sys.stderr)
        return 1
    return 0


def cmd_ask(args) -> int:
    from serving.rag import ask

    answer = ask(args.question, k=args.k, person_key=args.person_key)
    print(answer.answer)
    print(f"\nModel: {answer.model or 'none (evidence only)'}   answer_id: {answer.answer_id}")
    if not answer.cited_ok:
        print("Warning: the model's citations do not match the retrieved evidence.",
              file=sys.stderr)
    print("Citations:")
    for c in answer.citations:
        print(f"  [{c.chunk_id}] → {c.source_table} v{c.source_version} "
              f"document_id={c.source_key} (score {c.score:.3f})")
    return 0


def cmd_audit(args) -> int:
    from quality import audit

    try:
        if args.what == "table":
            report = audit.audit_table(args.target)
        elif args.what == "row":
            if not args.key:
                print("audit row needs a key: medlake audit row <schema.table> <key>", file=sys.stderr)
                return 2
            report = audit.audit_row(args.target, args.key)
        else:
            report = audit.audit_answer(args.target)
    except LookupError as e:
        print(e, file=sys.stderr)
        return 1
    print(audit.to_text(report))
    if args.html:
        from pathlib import Path

        Path(args.html).write_text(audit.to_html(report))
        print(f"HTML report written to {args.html}", file=sys.stderr)
    return 0


def cmd_sof_run(args) -> int:
    from pathlib import Path

    from medlake.sof import ViewDefinitionError, load_view
    from medlake.sof.files import run_to_file

    try:
        n = run_to_file(load_view(args.view), [Path(p) for p in args.resources], args.format,
                        Path(args.output) if args.output else None)
    except (ViewDefinitionError, ValueError, OSError) as e:
        print(f"medlake sof run: {e}", file=sys.stderr)
        return 2
    print(f"{n} rows" + (f" written to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from serving.app import create_app
    from serving.auth import TokenConfigError

    try:
        app = create_app()
    except TokenConfigError as e:
        print(f"{e} Fix MEDLAKE_API_TOKENS (see `medlake env`).", file=sys.stderr)
        return 2
    if not app.state.tokens:
        print("Warning: MEDLAKE_API_TOKENS is not set, so every /v1 request will be refused "
              "(401); set it to `principal:token` entries.", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="info")
    return 0


def cmd_serve_llm(args) -> int:
    import shlex

    from serving import vllm

    settings = get_settings()
    try:
        cmd = vllm.command(settings)
        if args.dry_run:
            print(shlex.join(cmd))
            return 0
        vllm.preflight(settings)
    except vllm.LaunchError as e:
        print(f"medlake serve-llm: {e}", file=sys.stderr)
        return 2
    print(f"Starting: {shlex.join(cmd)}", file=sys.stderr)
    os.environ.update(vllm.environment(settings))
    os.execvp(cmd[0], cmd)  # vLLM takes over this process (signals, exit code)


def cmd_env(args) -> int:
    print("| variable | default | meaning |\n| --- | --- | --- |")
    for name, (default, meaning) in ENV_VARS.items():
        print(f"| `{name}` | {default} | {meaning} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medlake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a deterministic sample hospital drop to landing/")
    g.add_argument("--patients", type=int, default=20)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bad-files", action="store_true", help="add deliberately broken files")
    g.add_argument("--ndjson", action="store_true", help="FHIR as bulk-export NDJSON")
    g.set_defaults(fn=cmd_generate)

    r = sub.add_parser("run", help="materialize every asset over what is in landing/")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)

    a = sub.add_parser("ask", help="answer a question from the lake, with citations")
    a.add_argument("question")
    a.add_argument("-k", type=int, default=5, help="chunks to retrieve")
    a.add_argument("--person-key", help="restrict to one person")
    a.set_defaults(fn=cmd_ask)

    au = sub.add_parser("audit", help="where a table, a row or an answer came from")
    au.add_argument("what", choices=["table", "row", "answer"])
    au.add_argument("target", help="schema.table, or an answer_id for `answer`")
    au.add_argument("key", nargs="?", help="the row's key, for `row`")
    au.add_argument("--html", metavar="PATH", help="also write an HTML report")
    au.set_defaults(fn=cmd_audit)
    sof = sub.add_parser("sof", help="SQL on FHIR v2 ViewDefinitions, run in DuckDB")
    sof_sub = sof.add_subparsers(dest="sof_command", required=True)
    s = sof_sub.add_parser("run", help="run a ViewDefinition over FHIR NDJSON / Bundle files")
    s.add_argument("view", help="ViewDefinition JSON file")
    s.add_argument("resources", nargs="+", help="FHIR NDJSON, Bundle or resource JSON files")
    s.add_argument("--format", choices=["csv", "ndjson", "parquet"], default="csv")
    s.add_argument("-o", "--output", help="output file (default: stdout; required for parquet)")
    s.set_defaults(fn=cmd_sof_run)
    s = sub.add_parser("serve", help="run the RAG HTTP service (FastAPI; docs at /docs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(fn=cmd_serve)

    v = sub.add_parser("serve-llm", help="run `vllm serve` as configured by MEDLAKE_LLM_MODEL "
                       "and MEDLAKE_VLLM_* (needs the gpu extra and a GPU)")
    v.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    v.set_defaults(fn=cmd_serve_llm)

    e = sub.add_parser("env", help="print the environment variables medlake reads")
    e.set_defaults(fn=cmd_env)

    args = parser.parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
