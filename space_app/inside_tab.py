"""The "Inside the model" tab: committed head, steering and transfer analyses of the bundled probes, and live attribution patching."""

from __future__ import annotations

import gradio as gr

from .inside_view import (
    LIVE_LIMITS,
    LiveAttribution,
    analyzed_probes,
    heads_markdown,
    read_section,
    steer_markdown,
    steering_examples_frame,
    top_heads_frame,
    transfer_frame,
    transfer_markdown,
)


def build_inside_tab(ctx, refusal) -> None:
    """Lay out the tab inside the caller's Blocks; ``refusal(message)`` makes the gr.Error shown for a bad request."""
    live = LiveAttribution(ctx.registry)
    probes = analyzed_probes()
    with gr.Tab("Inside the model") as tab:
        gr.Markdown("What the probes read, inside the model: which attention heads a probe's reading depends on, what happens when the "
                    "residual stream is pushed along the probe's direction, and whether a probe trained on easy questions still works on "
                    "hard ones. Computed with `probes-hub analyze heads|steer|transfer`; numbers and caveats in docs/results.md.")
        chosen = gr.Dropdown(probes, value=probes[0] if probes else None, label="Probe", elem_id="inside-probe")
        gr.Markdown("### Attention heads")
        heads_note = gr.Markdown(elem_id="inside-heads")
        with gr.Row():
            heads_plot = gr.Plot(label="Effect of ablating each head", elem_id="inside-heads-plot")
            agreement_plot = gr.Plot(label="Attribution patching vs exact ablation", elem_id="inside-agreement-plot")
        top_heads = gr.Dataframe(label="Top heads", interactive=False, wrap=True, elem_id="inside-top-heads")
        gr.Markdown("### Steering along the probe direction")
        steer_note = gr.Markdown(elem_id="inside-steer")
        steer_plot = gr.Plot(label="Reading, answer length and accuracy vs alpha (95% CI)", elem_id="inside-steer-plot")
        examples = gr.Dataframe(label="Example generations", interactive=False, wrap=True, elem_id="inside-examples")
        gr.Markdown("### Cross-difficulty transfer")
        transfer_note = gr.Markdown(elem_id="inside-transfer")
        with gr.Row():
            transfer_plot = gr.Plot(label="Train bin x test bin", elem_id="inside-transfer-plot")
            transfer_table = gr.Dataframe(label="Value [95% CI] (n)", interactive=False, wrap=True, elem_id="inside-transfer-table")

        with gr.Accordion("Re-run attribution patching live", open=False):
            with gr.Row():
                live_probe = gr.Dropdown([], label="Linear probe of the active model", elem_id="inside-live-probe", allow_custom_value=True)
                live_limit = gr.Slider(*LIVE_LIMITS, value=12, step=1, label="test questions (seeded subset)")
                live_button = gr.Button("Run attribution", elem_id="inside-live-run")
            live_note = gr.Markdown(elem_id="inside-live-note")
            with gr.Row():
                live_plot = gr.Plot(label="Attribution patching (live)", elem_id="inside-live-plot")
                live_table = gr.Dataframe(label="Top heads (live)", interactive=False, elem_id="inside-live-table")

        def show(probe: str | None):
            heads, steer, transfer = (read_section(probe or "", kind) for kind in ("heads", "steer", "transfer"))
            choices = live.probes_for(ctx.predictor.source.display_id)
            return (heads_markdown(heads.result), heads.charts.get("heads_heatmap"), heads.charts.get("heads_agreement"), top_heads_frame(heads.result),
                    steer_markdown(steer.result), steer.charts.get("steering_curves"), steering_examples_frame(steer.result),
                    transfer_markdown(transfer.result), transfer.charts.get("transfer_heatmap"), transfer_frame(transfer.result),
                    gr.Dropdown(choices=choices, value=probe if probe in choices else (choices[0] if choices else None)))

        outputs = [heads_note, heads_plot, agreement_plot, top_heads, steer_note, steer_plot, examples, transfer_note, transfer_plot, transfer_table, live_probe]
        chosen.change(show, inputs=chosen, outputs=outputs, api_name=False)
        tab.select(show, inputs=chosen, outputs=outputs, api_name="inside")

        def run_live(probe: str | None, limit: float):
            choices = live.probes_for(ctx.predictor.source.display_id)
            if probe not in choices:
                raise refusal(f"Choose one of the active model's linear probes ({len(choices)} available), not {str(probe)[:80]!r}.")
            if not isinstance(limit, (int, float)) or not LIVE_LIMITS[0] <= limit <= LIVE_LIMITS[1]:
                raise refusal(f"The number of test questions must be from {LIVE_LIMITS[0]} to {LIVE_LIMITS[1]}.")
            try:
                return live.run(ctx.model, probe, int(limit))
            except (ValueError, FileNotFoundError) as error:
                raise refusal(f"Attribution could not run: {error}") from error

        live_button.click(run_live, inputs=[live_probe, live_limit], outputs=[live_note, live_plot, live_table], api_name="attribution",
                          concurrency_limit=1, concurrency_id="attribution", preprocess=False)  # run_live checks its inputs itself
