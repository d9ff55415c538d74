"""A model's totals, small enough to travel back from a worker process: what the comparison
table of `analyze A B ...` shows per model."""

from __future__ import annotations

from dataclasses import dataclass

from convcost.analysis.result import Analysis, Totals, ratio


@dataclass(frozen=True)
class ModelTotals:
    """One model's totals, as its own analysis counts them (the comparison table's row)."""

    name: str
    source: str
    format: str
    conv_layers: int
    totals: Totals
    conv_params: int
    conv_macs: int
    devices: list[str]
    variant_totals: dict[str, Totals]

    @property
    def conv_share(self) -> float | None:
        """The share of the model's MACs in its convs (None for a model without MACs)."""
        return self.conv_macs / self.totals.macs if self.totals.macs else None

    def variant_ratios(self, name: str) -> tuple[float, float]:
        """(MACs, params) original / with the variant where it applies, as `Analysis.variant_ratios`."""
        vt = self.variant_totals[name]
        return ratio(self.totals.macs, vt.macs), ratio(self.totals.params, vt.params)


def model_totals(analysis: Analysis) -> ModelTotals:
    model = analysis.model
    return ModelTotals(name=model.name, source=model.source, format=model.format, conv_layers=len(analysis.layers),
                       totals=analysis.totals, conv_params=analysis.conv_cost.params,
                       conv_macs=analysis.conv_cost.macs, devices=list(analysis.devices),
                       variant_totals=dict(analysis.variant_totals))
