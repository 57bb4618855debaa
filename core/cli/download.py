"""`modelreg download hf|ollama`: thin wrappers over modelreg.download.hub with a terminal progress bar."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Callable, TypeVar

from modelreg.cli.output import add_global_options, console, print_json, print_table, registry_from_args, say

if TYPE_CHECKING:
    from modelreg.download.hub import RepoAnalysis
    from modelreg.download.progress import DownloadProgress
    from modelreg.download.register import DownloadResult

T = TypeVar("T")


def print_analysis(analysis: "RepoAnalysis", chosen: str | None) -> None:
    from modelreg.values import human_size
    say(f"{analysis.repo_id} at {analysis.commit[:12]} ({analysis.revision}): {len(analysis.files)} files, "
        f"{human_size(analysis.total_size)}; formats: {', '.join(analysis.formats) or 'none'}")
    presence = {"config.json": analysis.has_config, "tokenizer": analysis.has_tokenizer,
                "chat template": ", ".join(analysis.chat_template_sources) or False}
    say("  " + "; ".join(f"{k}: {v if isinstance(v, str) else ('yes' if v else 'no')}"
                         for k, v in presence.items()))
    if analysis.variants:
        print_table(["variant", "format", "weight files", "size", "chat template", ""],
                    [(v.key, v.format, len(v.weight_files), human_size(v.size_bytes),
                      "yes" if v.chat_template else "no",
                      "<- downloading" if v.key == chosen else ("recommended" if v.recommended else ""))
                     for v in analysis.variants])
    if analysis.login_hint():
        say(f"note: {analysis.login_hint()}")


def run_with_bar(work: Callable[[], T], progress: "DownloadProgress", quiet: bool) -> T:
    """Run `work()` in a thread with a rich bar fed by `progress`; Ctrl-C cancels (finished files are kept)."""
    import threading

    outcome: dict = {}
    finished = threading.Event()  # not Thread.join: a join interrupted by Ctrl-C may report a live thread dead

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc
        finally:
            finished.set()

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    err = console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=err, transient=True, disable=quiet or not err.is_terminal)
    with bar:
        task = bar.add_task("starting", total=None)
        progress.listeners.append(lambda p: bar.update(
            task, completed=p.bytes_done, total=p.bytes_total or None,
            description=f"{p.phase} {p.files_done}/{p.files_total} files" if p.files_total else p.phase))
        thread = threading.Thread(target=target, name="download", daemon=True)
        thread.start()
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            progress.cancel()
            say("cancelling: stopping at the next chunk ...", stderr=True)
            finished.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def print_result(result: "DownloadResult", as_json: bool) -> None:
    if as_json:
        return print_json(result.to_dict())
    where = f" in {result.folder}" if result.folder else ""
    say(f"downloaded {result.ref}{where}")
    for name in result.names:
        state = "new curated stub" if name in result.stubbed else "already configured"
        say(f"registered {name} ({state})")
        for item in result.to_decide.get(name, []):
            say(f"  to decide: {item}")
    for line in result.notes + [f"problem: {p}" for p in result.problems]:
        say(line)


def cmd_download_hf(args: argparse.Namespace) -> None:
    from modelreg.download.hub import analyse_hf_repo, download_hf, download_root, select_files
    from modelreg.download.progress import DownloadCancelled, DownloadProgress
    from modelreg.values import human_size
    registry = registry_from_args(args, create=not args.dry_run)
    root = download_root(registry, args.to)
    analysis = analyse_hf_repo(args.repo_id, args.revision)
    include = args.include or None
    chosen = None if include else analysis.variant(args.variant).key
    if not args.json:
        print_analysis(analysis, chosen)
    if args.dry_run:
        files = select_files(analysis, chosen, include)
        if args.json:
            return print_json({"analysis": analysis.to_dict(), "files": [f.path for f in files]})
        say(f"would download {len(files)} file(s), {human_size(sum(f.size for f in files))}: "
            + ", ".join(f.path for f in files))
        return
    progress = DownloadProgress()
    try:
        result = run_with_bar(lambda: download_hf(registry, args.repo_id, revision=args.revision, variant=chosen,
                                                  include=include, root=root, progress=progress,
                                                  analysis=analysis), progress, args.quiet or args.json)
    except DownloadCancelled as exc:
        say(str(exc), stderr=True)
        raise SystemExit(130) from None
    print_result(result, args.json)


def cmd_download_ollama(args: argparse.Namespace) -> None:
    from modelreg.download.ollama import pull_ollama
    from modelreg.download.progress import DownloadCancelled, DownloadProgress
    registry = registry_from_args(args, create=True)
    progress = DownloadProgress()
    try:
        result = run_with_bar(lambda: pull_ollama(registry, args.name, host=args.host, progress=progress),
                              progress, args.quiet or args.json)
    except DownloadCancelled as exc:
        say(str(exc), stderr=True)
        raise SystemExit(130) from None
    print_result(result, args.json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("download", help="download a model (Hugging Face or Ollama), then register it",
                            description="download a model, scan it into the registry, create its curated stub "
                                        "with suggestions and rebuild; prints what you still have to decide")
    kinds = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    hf = kinds.add_parser("hf", help="from a Hugging Face repo",
                          description="analyse a Hugging Face repo (formats, GGUF variants, sizes), check free "
                                      "space, download the chosen files into ROOT/ORG/NAME with a progress bar "
                                      "(Ctrl-C cancels; running it again resumes), then register the model")
    hf.add_argument("repo_id", metavar="REPO_ID", help="ORG/NAME, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    hf.add_argument("--revision", metavar="R", default=None, help="branch, tag or commit (default: main)")
    hf.add_argument("--variant", metavar="KEY", default=None,
                    help="which choice to fetch, e.g. Q4_K_M or safetensors (default: the recommended one)")
    hf.add_argument("--include", metavar="GLOB", nargs="+", default=None,
                    help="fetch the weight files matching these globs instead of a variant (config, tokenizer "
                         "and template files always come along)")
    hf.add_argument("--to", metavar="ROOT", default=None,
                    help="models root; files go to ROOT/ORG/NAME (default: the first of model_roots in settings)")
    hf.add_argument("--dry-run", action="store_true", help="analyse and list the files, download nothing")
    hf.add_argument("--json", action="store_true", help="print the result as JSON")
    hf.add_argument("--quiet", action="store_true", help="no progress bar")
    hf.set_defaults(handler=cmd_download_hf)

    pull = kinds.add_parser("ollama", help="through the Ollama daemon",
                            description="pull NAME[:TAG] through the Ollama daemon at the configured host with a "
                                        "progress bar, then discover it from Ollama's store and register it")
    pull.add_argument("name", metavar="NAME[:TAG]", help="e.g. llama3.2:1b")
    pull.add_argument("--host", default=None, metavar="URL", help="Ollama daemon (default: the ollama_host setting)")
    pull.add_argument("--json", action="store_true", help="print the result as JSON")
    pull.add_argument("--quiet", action="store_true", help="no progress bar")
    pull.set_defaults(handler=cmd_download_ollama)
    for subparser in (hf, pull):
        add_global_options(subparser)
