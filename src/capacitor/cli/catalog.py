"""``capacitor gpus`` and ``capacitor models``: the bundled catalogues."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from capacitor.cli.base import app, console, models_app, user_errors

# ---- catalogues ----------------------------------------------------------------------------


@app.command()
@user_errors
def gpus() -> None:
    """The GPU catalogue."""
    from capacitor.catalog.hardware import list_gpus

    headers = ("name", "family", "GiB", "TB/s", "BF16", "FP8", "FP4", "link GB/s", "TDP W")
    rows = []
    for g in list_gpus():
        tf = [_num(g.dense_tflops.get(k), sep="") for k in ("bf16", "fp8", "fp4")]
        link = f"{g.interconnect} {g.interconnect_gb_s:.0f}"
        mem, bw = _num(g.memory_gib), _num(g.hbm_tb_s, 2)
        rows.append((g.name, g.family, mem, bw, *tf, link, _num(g.tdp_w, sep="")))
    table = Table(title="GPUs (dense TFLOPS per precision)", box=None, header_style="bold")
    for i, col in enumerate(headers):
        width = max(len(r[i]) for r in [headers, *rows])
        table.add_column(col, justify="left" if i < 2 else "right", min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _num(value: float | None, digits: int = 0, sep: str = ",") -> str:
    return "-" if value is None else f"{value:{sep}.{digits}f}"


@models_app.callback()
@user_errors
def models(ctx: typer.Context) -> None:
    """The bundled model catalogue (``models show NAME``, ``models import CONFIG.json``)."""
    if ctx.invoked_subcommand is not None:
        return
    from capacitor.catalog.models import list_models

    table = Table(title="models (capacitor models show NAME for one)")
    table.add_column("name", overflow="fold")
    for col in ("params B", "active B", "layers", "experts", "dtype"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for m in list_models():
        experts = f"{m.num_experts_per_tok}/{m.num_experts}" if m.num_experts else "-"
        params = (f"{n / 1e9:.1f}" for n in (m.param_count(), m.active_param_count()))
        table.add_row(m.name, *params, str(m.num_layers), experts, m.weight_dtype)
    console.print(table)


def _print_spec(spec: Any) -> None:
    table = Table(title=spec.name, show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        table.add_row(f.name, ", ".join(value) if isinstance(value, tuple) else str(value))
    table.add_row("[bold]parameters", f"{spec.param_count():,} ({spec.param_count() / 1e9:.2f} B)")
    table.add_row("[bold]active parameters", f"{spec.active_param_count():,}")
    table.add_row("[bold]KV bytes/token (16-bit)", f"{spec.kv_bytes_per_token(2):,.0f}")
    console.print(table)


@models_app.command("show")
@user_errors
def models_show(name: Annotated[str, typer.Argument(help="Bundled name or HF repo id.")]) -> None:
    """A bundled model's architecture and parameter counts."""
    from capacitor.catalog.models import resolve_model

    _print_spec(resolve_model(name))


@models_app.command("import")
@user_errors
def models_import(
    config: Annotated[Path, typer.Argument(help="A Hugging Face config.json.")],
) -> None:
    """Parse a Hugging Face config.json (and the generation_config.json beside it, whose
    top-p / top-k defaults decide the sampler's cost) and print the spec capacitor reads."""
    from capacitor.catalog.models import load_config_file

    _print_spec(load_config_file(config))
