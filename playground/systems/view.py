"""The Systems page: profile one training step of the one trainer at the sizes picked, op by op, and see
each plan toggle's effect against the previous profile.

The logic (settings, the profile, what each chart reads) is logic.py, the charts figures.py; the size
bound and every check belong to lm.profile: this page shows its messages.
"""

from __future__ import annotations

import streamlit as st

from playground.common.markdown import literal
from playground.common.view import persistent
from playground.systems import logic as sy
from playground.systems.figures import (
    delta_figure,
    floor_figure,
    flops_figure,
    memory_figure,
    op_time_figure,
    roofline_figure,
)

RUNS = "sys_runs"  # this session's last two profiles: [previous, this]
DEFAULTS = sy.Settings()

st.title("Systems")
st.markdown(
    "Where does a training step's time go? A static graph knows its whole schedule before it runs, so this "
    "page times **every node of the plan** as the generated code runs it: one training step of the nanoGPT "
    "recipe (Tiny Shakespeare characters, AdamW) at the sizes you pick. Flip a toggle and profile again to "
    "see what it changes, next to the previous profile."
)


def settings_ui() -> sy.Settings:
    """The model, batch and toggles (plain values)."""
    preset_col, layers_col, heads_col, d_col, context_col, batch_col = st.columns(6)
    preset = preset_col.selectbox("Preset", sy.PRESET_NAMES, **persistent("sys_preset", DEFAULTS.preset))
    numbers = {}
    specs = [
        (layers_col, "n_layers", "Layers", 1, 16),
        (heads_col, "n_heads", "Heads", 1, 16),
        (d_col, "d_model", "d_model", 8, 512),
        (context_col, "context", "Context", 2, 512),
        (batch_col, "batch", "Batch", 1, 64),
    ]
    for col, name, label, low, high in specs:  # the profile's own bound (lm) decides what runs
        numbers[name] = col.number_input(
            label, min_value=low, max_value=high, step=1, **persistent(f"sys_{name}", getattr(DEFAULTS, name))
        )
    st.markdown("**Plan toggles** — each changes how the same step is computed, not what it computes.")
    layout_col, fused_col, compiled_col, memory_col, remat_col = st.columns(5)
    layout = layout_col.radio(
        "Attention layout", list(sy.LAYOUTS), horizontal=True, **persistent("sys_layout", DEFAULTS.layout),
        help="auto: the model's choice (packed when the batch has at most 64 rows). Packed: every row of the batch "
        "in one matrix, with a mask keeping sequences apart (scores grow as rows²). Batched: one matrix per sequence.",
    )  # fmt: skip
    fused = fused_col.toggle(
        "Fused backward nodes", **persistent("sys_fused", DEFAULTS.fused),
        help="On: a norm's, softmax's or GELU's gradient is one node running one torch kernel. Off: the same "
        "formula written out in primitive ops (mean, mul, sub...): more nodes, more passes over memory.",
    )  # fmt: skip
    compiled = compiled_col.toggle(
        "Generated code", **persistent("sys_compiled", DEFAULTS.compiled),
        help="On: the plan runs as generated straight-line Python. Off: the same plan in the interpreted loop "
        "(each step looks up its inputs, calls its op, checks and frees through lists).",
    )  # fmt: skip
    keep_freed = memory_col.toggle(
        "Keep freed memory", **persistent("sys_keep_freed", DEFAULTS.keep_freed),
        help="On (as training runs): malloc keeps the memory a step frees, for the next step. Off: glibc's "
        "defaults hand large blocks back to the system, and the next step faults its pages in again. Off runs "
        "in a fresh process (a few seconds more), since the setting cannot be undone in one.",
    )  # fmt: skip
    remat = remat_col.toggle(
        "Activation checkpointing", **persistent("sys_remat", DEFAULTS.remat),
        help="Off (as training runs by default): every forward value the backward pass reads is kept until it is "
        "read. On: only each block's input is kept, and the block's forward is computed again just before its "
        "backward needs it: less memory for more arithmetic (the same gradients, bit for bit).",
    )  # fmt: skip
    sizes = {name: int(value) for name, value in numbers.items()}
    return sy.Settings(preset, **sizes, steps=DEFAULTS.steps, layout=layout, fused=fused, compiled=compiled,
                       keep_freed=keep_freed, remat=remat)  # fmt: skip


settings = settings_ui()
runs: list[sy.Run] = st.session_state.setdefault(RUNS, [])
# the Home page's example arrives with its sizes set and profiles at once
if st.button("Profile", icon=":material/speed:", type="primary", key="sys_run") or st.session_state.pop(
    "sys_autorun", False
):
    try:
        sy.check(settings)  # before any work: lm's bound and checks
        where = "" if settings.keep_freed else " in a fresh process"
        with st.spinner(f"Profiling {settings.steps} steps after a warm-up{where}, then this machine's matmul peak…"):
            result = sy.run(settings)
    except sy.ProfileError as err:
        st.error(literal(err), icon=":material/block:")
    else:
        runs.append(result)
        del runs[:-2]

if runs:
    this = runs[-1]
    p = this.profile
    previous = runs[0] if len(runs) == 2 else None
    st.caption(literal(this.settings.describe()))
    step_col, ratio_col, nodes_col, faults_col, overhead_col = st.columns(5)
    before = previous.profile if previous else None
    step_col.metric(
        "Step (median)", f"{p.step:.2f} ms",
        delta=f"{p.step - before.step:+.2f} ms" if before else None, delta_color="inverse",
    )  # fmt: skip
    ratio_col.metric(
        "× matmul floor", f"{p.floor_ratio:.2f}",
        delta=f"{p.floor_ratio - before.floor_ratio:+.2f}" if before else None, delta_color="inverse",
    )  # fmt: skip
    nodes_col.metric("Nodes in the plan", f"{p.nodes:,}", delta=f"{p.nodes - before.nodes:+,}" if before else None,
                     delta_color="off")  # fmt: skip
    faults = "n/a" if p.page_faults is None else f"{p.page_faults:,.0f}"
    both = before is not None and None not in (p.page_faults, before.page_faults)
    faults_col.metric(
        "Page faults per step", faults, help="Minor page faults: pages the kernel mapped in (and zeroed) for the step.",
        delta=f"{p.page_faults - before.page_faults:+,.0f}" if both else None, delta_color="inverse",
    )  # fmt: skip
    overhead_col.metric(
        "Profiling overhead", f"{p.overhead:+.0%}", help="The profiled step's median over the plain one's."
    )
    st.markdown(sy.summary(this))

    chart, text = st.columns([3, 2])
    chart.plotly_chart(op_time_figure(sy.op_times(p)), key="sys_time")
    text.markdown(
        "**Time per op.** Each bar is every node of one op added up, per step, as the profiled code measured it "
        "(a clock reading after each step of the plan). The larger the model, the more of a step its matrix "
        "products take; what else shows up here — norms, softmax, layout copies, tiny elementwise ops — is what "
        "a faster step would fuse or remove. Hover a bar for its calls; the table below lists every op."
    )
    with st.expander("Every op as a table"):
        st.dataframe(sy.op_table(p), hide_index=True)
    chart, text = st.columns([3, 2])
    chart.plotly_chart(flops_figure(sy.op_flops(p)), key="sys_flops")
    text.markdown(
        "**FLOPs per op.** The arithmetic each op does, from its input shapes (matmul: 2·m·n·k; elementwise ops "
        "one per element; norms and softmax a documented count). Compare with the time chart: matmuls do nearly "
        "all the arithmetic, so an op high in time but low in FLOPs is bound by memory traffic or by the "
        "overhead of being called, not by the processor's arithmetic."
    )
    chart, text = st.columns([3, 2])
    chart.plotly_chart(roofline_figure(p), key="sys_roofline")
    text.markdown(
        "**Matmuls against the roofline.** Each point is one matmul shape: its arithmetic intensity (FLOPs per "
        "byte it must read and write) and the GFLOP/s it reached, in the step (blue) and as plain `torch.matmul` "
        "on fresh inputs of that shape (diamonds). The dashed line is this machine's best measured rate. Thin "
        "products (low intensity: attention's per-head products, small batches) cannot reach it: they wait on "
        "memory, whatever the framework."
    )
    chart, text = st.columns([3, 2])
    chart.plotly_chart(floor_figure(sy.step_parts(p), p.floor_ms), key="sys_floor")
    text.markdown(
        "**The step against its floor.** The top bar is a profiled step: the graph's matmuls, its other ops, "
        "calling the generated code, and the work outside the graph (drawing the batch, clipping, AdamW). The "
        "bottom bar is the floor: the step's matmul FLOPs at the peak rate. No framework beats it; the ratio "
        "says how much of the step is everything else."
    )

    st.header("Memory")
    timeline = p.memory
    st.markdown(sy.memory_summary(this))
    chart, text = st.columns([3, 2])
    chart.plotly_chart(
        memory_figure(sy.memory_series(timeline), timeline.names, timeline.peak_step, timeline.peak / sy.MIB),
        key="sys_memory",
    )
    text.markdown(
        "**Memory along the plan, known before it runs.** The plan says when each value is made and when its "
        "last reader frees it, and one pass over shapes (no arithmetic) says each value's size, so this chart "
        "is read from the plan, not sampled. Parameters and the batch stay all along; the forward pass piles up "
        "*activations* (values the backward pass will read again) until the loss; the backward pass frees them "
        "as it consumes them, while gradients and other temporaries come and go. Turn on activation "
        "checkpointing and profile again: the activations' hill flattens, and the time chart shows the "
        "recomputed forward ops."
    )
    with st.expander(f"The {min(sy.TOP_ALIVE, len(timeline.alive_at_peak))} largest values alive at the peak"):
        st.dataframe(sy.alive_table(timeline), hide_index=True)

    st.header("Previous vs this profile")
    if previous is None:
        st.markdown("Flip a toggle (or change a size) and profile again: the two profiles are compared here.")
    else:
        change = sy.delta(previous, this)
        changed = ", ".join(change.changed) if change.changed else "nothing (the same settings again: noise)"
        st.markdown(
            f"Changed: {literal(changed)}. Step: {change.step_before:.2f} → {change.step_after:.2f} ms "
            f"(**{change.step_ratio:.2f}×**). Memory peak: {change.peak_before:.2f} → {change.peak_after:.2f} MiB; "
            f"activations kept at their most: {change.activations_before:.2f} → {change.activations_after:.2f} MiB."
        )
        chart, text = st.columns([3, 2])
        chart.plotly_chart(delta_figure(change), key="sys_delta")
        text.markdown(
            "**What changed, by kind of work.** The previous profile's time per kind beside this one's, the "
            "largest change on top. On this shared machine a few percent either way is noise: profile the same "
            "settings twice to see how much. A real effect shows in the kinds the toggle touches: norms moving "
            "to reductions and elementwise ops with fused nodes off; every kind growing a little with the "
            "interpreted loop (each step pays its lookups, checks and frees); matmul and softmax with the "
            "attention layout; the batch, clipping and AdamW part with freed memory returned."
        )
