"""Plot a stored CS800 run: temperature, set point and target against controller time.

Reads the run ``UID`` (a uid or its first characters; default: the newest run) from the Tiled
store at ``--data DIR`` (default: the per-user data directory) or a Tiled server
(``--data http://host:8000``) and writes a PNG at print resolution::

    python examples/plot_run.py 2803645e --data ~/cs800-runs --out run.png

The x axis is the controller's time in minutes since the run started; for a run of the
simulated controller (start document ``sim_speed``) it is simulated minutes, and the speed-up
is stated. TEMP and SETPOINT come from the run's monitor streams (every update), the target
from its readings; alarms of Oxford level 2 and above are marked where they appeared.
Needs the ``[data]`` extra and matplotlib.
"""

from __future__ import annotations

import argparse
from typing import Any


def _stream(run: Any, stream: str, key: str) -> tuple[list[float], list[Any]]:
    """Return (times, values) of ``key`` in ``stream`` of ``run``; empty if the stream is absent."""
    if stream not in run:
        return [], []
    node = run[stream]
    return list(node["time"].read()), list(node[key].read())


def draw_run(run: Any, out: str, *, name: str = "cs0") -> str:
    """Draw the run to the PNG ``out``; returns a one-line description of what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ophyd_cs800.enums import alarm_for

    start = run.metadata["start"]
    speed = float(start.get("sim_speed", 1.0))
    t0 = start["time"]

    def minutes(times: list[float]) -> list[float]:
        return [(t - t0) * speed / 60.0 for t in times]

    temp_t, temps = _stream(run, f"{name}_monitor", name)
    if not temps:  # a run without the TEMP monitor: its readings
        temp_t, temps = _stream(run, "primary", name)
    set_t, setpoints = _stream(run, f"{name}_setpoint_monitor", f"{name}_setpoint")
    if not setpoints:
        set_t, setpoints = _stream(run, "primary", f"{name}_setpoint")
    target_t, targets = _stream(run, "primary", f"{name}_target")
    alarm_t, codes = _stream(run, f"{name}_alarm_code_monitor", f"{name}_alarm_code")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(minutes(set_t), setpoints, "--", drawstyle="steps-post", label="SETPOINT (ramping)")
    ax.plot(minutes(temp_t), temps, "-", lw=1.2, label="TEMP (sample gas)")
    if targets:
        ax.plot(minutes(target_t), targets, "o", ms=4, color="grey", label="target (TARGETTEMP)")
    marked, previous = 0, None
    for t, code in zip(minutes(alarm_t), codes, strict=True):
        try:
            alarm = alarm_for(int(code))
        except (TypeError, ValueError):
            continue
        if alarm.code == previous:  # the same alarm again (a severity update): marked once
            continue
        previous = alarm.code
        if alarm.level >= 2:
            marked += 1
            ax.axvline(t, color="red", lw=0.8)
            ax.annotate(f"alarm {alarm.code}: {alarm.text} (level {alarm.level})", (t, 0.98),
                        xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                        fontsize=7, color="red")
    unit = "minutes" if speed == 1.0 else f"simulated minutes (simulator at x{speed:g})"
    ax.set_xlabel(f"controller time since the run started ({unit})")
    ax.set_ylabel("temperature (K)")
    rate = start.get("plan_args", {}).get("rate")
    how = f" at {rate:g} K/h" if rate else ""
    target_k = start.get("target_K")
    what = f"to {target_k:g} K" if target_k is not None else ""
    ax.set_title(f"{name}: {start.get('plan_name', 'run')} {what}{how} "
                 f"(run {start['uid'][:8]})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=300)
    plt.close(fig)
    return (f"{len(temps)} TEMP points, {len(setpoints)} SETPOINT points, {marked} alarm(s) "
            f"marked; ended at {temps[-1]:.2f} K; plot saved to {out}")


def find_run(client: Any, uid: str | None) -> Any:
    """Return the run ``uid`` (or uid prefix) of ``client``; the newest when ``uid`` is None."""
    if uid is None:
        return client.values().last()
    if uid in client:
        return client[uid]
    matches = [key for key in client if key.startswith(uid)]
    if len(matches) != 1:
        raise SystemExit(f"plot_run: {len(matches)} runs start with {uid!r} in the store")
    return client[matches[0]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uid", nargs="?", default=None,
                        help="run uid or its first characters (default: the newest run)")
    parser.add_argument("--data", default=None, help="store directory or Tiled server URL")
    parser.add_argument("--name", default="cs0", help="device name in the run (default cs0)")
    parser.add_argument("--out", default="cs800_run.png", help="PNG file to write")
    args = parser.parse_args(argv)

    from ophyd_cs800.store import open_catalog

    run = find_run(open_catalog(args.data), args.uid)
    print(draw_run(run, args.out, name=args.name))


if __name__ == "__main__":
    main()
