"""`modelreg scan [PATH...]`, `forget` and `fit NAME`: thin wrappers over modelreg.discovery.scan and launch.advice."""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from modelreg.cli.output import print_json, registry_from_args, say, shell_args

if TYPE_CHECKING:
    from modelreg.discovery.scan import ScanResult
    from modelreg.registry import Registry


def cmd_scan(args: argparse.Namespace) -> None:
    from modelreg.discovery.scan import scan
    result = scan(registry_from_args(args, create=True), args.paths, stubs=not args.no_stubs)
    if args.json:
        return print_json(result.as_dict())
    print_scan(result)


def registry_or_first_scan(args: argparse.Namespace) -> "Registry":
    """The registry the global options name. On a first run (neither --config-dir nor $MODELREG_CONFIG_DIR, and the
    default folder holds no layer yet) the folder is created and filled by a scan of the usual places, with stubs."""
    from modelreg.registry import default_config_dir, holds_layers
    if args.config_dir or os.environ.get("MODELREG_CONFIG_DIR") or holds_layers(default_config_dir()):
        return registry_from_args(args)
    from modelreg.discovery.scan import scan
    registry = registry_from_args(args, create=True)
    say(f"modelreg: a new registry in {registry.config_dir}; looking for the models you have in the usual places")
    print_scan(scan(registry))
    return registry


def print_scan(result: "ScanResult") -> None:
    for model in result.models:
        say(f"{model['status']:>9}  {model['name']}  ({model['format']}, {model['quantization'] or 'unquantized'})"
            f"  {model['path']}")
    for name in result.missing:
        say(f"  missing  {name}  (its files are gone; it stays marked missing until `modelreg forget {name}`)")
    for problem in result.problems:
        say(f"  skipped  {problem}")
    say(f"{len(result.models)} model(s) in {', '.join(result.roots) or 'no roots'}; {len(result.stubs)} new "
        f"stub(s), {len(result.missing)} missing, {len(result.problems)} problem(s)")


def cmd_forget(args: argparse.Namespace) -> None:
    from modelreg.discovery.scan import forget
    for name in forget(registry_from_args(args), args.names):
        say(f"removed {name} from the discovered layer")


def cmd_fit(args: argparse.Namespace) -> None:
    from modelreg.launch.advice.fit import fit_summary
    from modelreg.values import human_size
    registry = registry_from_args(args, reads_snapshot=True)
    fit = fit_summary(registry.entry(args.name), registry.settings, args.gpu_mem, args.utilization)
    if args.json:
        return print_json(fit)
    say(f"{args.name} on {human_size(fit['gpu_memory_bytes'])} at utilization {fit['utilization']} "
        f"({fit['engine']}): budget {human_size(fit['budget_bytes'])}")
    if not fit["known"]:
        return say(f"  no estimate: {fit['reason']}")
    say(f"  weights {human_size(fit['weights_bytes'])} + overhead {human_size(fit['overhead_bytes'])}; "
        f"KV cache {human_size(fit['kv_cache_bytes'])} at {fit['kv_bytes_per_token']:,} bytes/token "
        f"({fit['kv_cache_dtype']})")
    say(f"  largest context that fits: {fit['max_context']:,} tokens; native context: "
        f"{fit['native_context'] or 'unknown'}" + (f"; configured: {fit['configured_context']:,}"
                                                  if fit["configured_context"] else ""))
    if fit.get("reason"):
        say(f"  does not fit: {fit['reason']}")
    elif fit.get("suggested_args") and not fit["configured_context"]:
        say(f"  the native context does not fit: add {shell_args(fit['suggested_args'])} "
            f"(modelreg set {args.name} backend_config.extra_args '[...]')")
    else:
        say("  fits" if fit["fits"] else "  the configured context does not fit; lower it")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="find models on disk and write their facts into the discovered layer",
                       description="Find Hugging Face folders and cache, GGUF files and Ollama's store under PATHs "
                                   "(default: settings model_roots, HF_HUB_CACHE/HF_HOME, OLLAMA_MODELS or "
                                   "~/.ollama/models); write facts to discovered, stub new models, rebuild. Creates "
                                   "the registry folder if it is missing.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="folder or GGUF file to scan")
    p.add_argument("--no-stubs", action="store_true", help="do not create curated stubs for new models")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_scan)
    p = sub.add_parser("forget", help="remove models marked missing from the discovered layer",
                       description="Remove discovered entries whose files are gone (marked missing by a scan); "
                                   "their curated configuration is kept.")
    p.add_argument("names", nargs="+", metavar="NAME", help="model name")
    p.set_defaults(handler=cmd_forget)
    p = sub.add_parser("fit", help="estimate whether a model and its context fit the GPU",
                       description="Weights, KV-cache bytes per token and the largest context that fits the GPU "
                                   "memory of the active profile (settings gpu_memory, gpu_memory_utilization).")
    p.add_argument("name", help="model name")
    p.add_argument("--gpu-mem", default=None, metavar="SIZE", help="GPU memory, e.g. 16GiB (default: settings)")
    p.add_argument("--utilization", type=float, default=None, metavar="FRACTION",
                   help="fraction of GPU memory the backend may use (default: settings)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_fit)
