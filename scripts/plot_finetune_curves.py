"""Plot the fine-tuning curves of scripts/train_generalist.py's report as docs/finetune_curves.png.

    QT_QPA_PLATFORM=offscreen python scripts/plot_finetune_curves.py [build/generalist/report.json]

One panel per source held out: Pearson r on that source's test fields after 0, 1, 2, 5 and 10
minutes of training on its training fields, fine-tuned from the model that never saw the source
(0 minutes = zero-shot) versus a new network from scratch; the synthetic demo model as a dashed line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"isl": "ISL neurons (phase)", "sephace": "sephaCe (bright-field)", "celldetective": "MCF-7 (bright-field)",
         "mlcp": "Jurkat, flow cytometer", "aisegcell": "aiSEGcell HSPCs (bright-field)"}


def main() -> int:
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter

    report = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "generalist" / "report.json").read_text())
    app = pg.mkQApp()
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    layout = pg.GraphicsLayoutWidget()
    layout.resize(1900, 460)
    for column, (source, name) in enumerate(NAMES.items()):
        plot = layout.addPlot(row=0, col=column, title=name)
        plot.setLabel("bottom", "minutes of training (wall clock, two runs sharing two cores)")
        plot.setLabel("left", "Pearson r on held-out fields" if column == 0 else "")
        plot.setXRange(0, 10)
        plot.setYRange(0, 1)
        plot.showGrid(x=True, y=True, alpha=0.3)
        if column == 0:
            plot.addLegend(offset=(10, 10))
        for start, colour, label in (("loso", "#1f77b4", "fine-tuned"),
                                     ("scratch", "#d62728", "from scratch")):
            curve = report.get("curves", {}).get(f"curve-{source}-{start}")
            if not curve:
                continue
            points = [(float(m), r) for m, r in curve["pearson_r"].items() if r is not None]
            xs, ys = zip(*sorted(points))
            plot.plot(xs, ys, pen=pg.mkPen(colour, width=3), symbol="o", symbolBrush=colour, name=label)
        baseline = report.get("loso", {}).get(source, {}).get("demo_baseline")
        if baseline is not None:
            line = pg.InfiniteLine(pos=baseline, angle=0, pen=pg.mkPen("#777777", width=2, style=pg.QtCore.Qt.DashLine))
            plot.addItem(line)
            if column == 0:
                plot.legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#777777", width=2, style=pg.QtCore.Qt.DashLine)),
                                    "demo model")
    layout.show()
    for _ in range(5):
        app.processEvents()
    out = ROOT / "docs" / "finetune_curves.png"
    exporter = ImageExporter(layout.scene())
    exporter.parameters()["width"] = 1900
    exporter.export(str(out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
