"""The "Route a workload" tab: upload a file of questions, get a plan (one model per question) with its expected accuracy and cost."""

from __future__ import annotations

import traceback
from pathlib import Path

import gradio as gr

from probes_hub.routing.workload import MAX_WORKLOAD_QUESTIONS, plan_workload, read_workload

from .model_worker import ModelWorkerError
from .predict_view import MAX_LAMBDA, finite_number
from .workload_view import MAX_WORKLOAD_BYTES, plan_chart, plan_file, shares_frame, summary_markdown


def build_workload_tab(ctx, refusal) -> None:
    """Lay out the tab inside the caller's Blocks; ``refusal(message)`` makes the gr.Error shown for a bad file or value."""
    pools = list(ctx.predictor.pools)
    with gr.Tab("Route a workload"):
        gr.Markdown(f"Upload a **.csv**, **.jsonl** or **.parquet** file with a `question` column (optional `id`; optional `correct:<model>` "
                    f"columns for every pool model report the realised accuracy too), up to {MAX_WORKLOAD_QUESTIONS:,} questions and "
                    f"{MAX_WORKLOAD_BYTES // 2**20} MB. Each question is routed as on the Predict tab; the plan's expected accuracy and cost "
                    "are compared with always using the pool's most accurate and its cheapest model. Same as `probes-hub route-file`.")
        with gr.Row():
            upload = gr.File(label="Workload file", file_types=[".csv", ".jsonl", ".parquet"], elem_id="workload-file")
            with gr.Column():
                pool = gr.Dropdown(pools, value=pools[0] if pools else None, label="Route within pool", elem_id="workload-pool")
                lam = gr.Slider(0, 2, value=ctx.predictor.pools[pools[0]].default_lambda if pools else 0.2, step=0.01,
                                label="lambda (cost weight; starts at the pool's default)")
                button = gr.Button("Route the workload", variant="primary", elem_id="workload-run")
        summary = gr.Markdown(elem_id="workload-summary")
        with gr.Row():
            chart = gr.Plot(label="Expected accuracy vs cost", elem_id="workload-chart")
            shares = gr.Dataframe(label="Share of questions per model", interactive=False, elem_id="workload-shares")
        download = gr.File(label="The plan (CSV: one row per question)", interactive=False, elem_id="workload-plan")

        def on_route(path, pool_name: str, lam_value: float, progress=gr.Progress(track_tqdm=True)):
            path = path if isinstance(path, str) or path is None else path.name
            try:
                if not path:
                    raise ValueError("Choose a workload file first (.csv, .jsonl or .parquet with a 'question' column).")
                size = Path(path).stat().st_size
                if size > MAX_WORKLOAD_BYTES:
                    raise ValueError(f"{Path(path).name} is {size / 2**20:.1f} MB; the limit here is {MAX_WORKLOAD_BYTES // 2**20} MB "
                                     "(use `probes-hub route-file` for larger files).")
                router = ctx.predictor.routers.get(pool_name) if pool_name in ctx.predictor.pools else None
                if router is None:
                    if ctx.predictor.probes is None:
                        ctx.predictor.reload()
                    router = ctx.predictor.routers.get(pool_name)
                if router is None:
                    raise ValueError(f"Pool {str(pool_name)[:60]!r} has no router here; choose one of {', '.join(pools)}.")
                plan = plan_workload(router, ctx.evaluation_source(), read_workload(path, router.pool),
                                     lam=finite_number(lam_value, "lambda", 0, MAX_LAMBDA))
            except (ValueError, ModelWorkerError, OSError) as error:
                raise refusal(str(error)) from error
            except Exception as error:  # a bug: logged with its traceback, reported in one line
                traceback.print_exc()
                raise refusal(f"Routing the workload failed ({type(error).__name__}); please retry. If it persists, report it.") from error
            finally:  # the uploaded copy in Gradio's cache is read once (delete_cache sweeps any left behind)
                if path:
                    Path(path).unlink(missing_ok=True)
            return (summary_markdown(plan.summary, router.pool.name, router.pool.cost_unit), plan_chart(plan.summary), shares_frame(plan.summary),
                    str(plan_file(plan)), None)  # the upload was read and deleted: the file box is emptied for the next one

        button.click(on_route, inputs=[upload, pool, lam], outputs=[summary, chart, shares, download, upload], api_name="route_workload",
                     concurrency_limit=1, concurrency_id="workload")
        pool.change(lambda name: gr.Slider(value=ctx.predictor.pools[name].default_lambda) if name in ctx.predictor.pools else gr.skip(),
                    inputs=pool, outputs=lam, api_name=False)
