"""The model report (h2o_tasks.report) without a cluster: the residuals plot, and a regression report
that has no rows to draw it from."""

from __future__ import annotations

from tests.fixtures.pipelines import variant, whole


class _Model:
    model_id, algo = "m1", "gbm"

    def varimp(self):
        return []


def _regression_cfg():
    return variant(target=whole({"column": "arr_delay", "problem": "regression"}),
                   training={"metric": "rmse"}, quality_gate={"metric": "rmse"})


def test_residuals_png(tmp_path):
    from h2o_tasks.report import residuals_png

    points = [(float(i), i + (-1) ** i * 0.5) for i in range(200)]
    assert residuals_png(points, tmp_path / "residuals.png", "t")
    assert (tmp_path / "residuals.png").read_bytes()[:4] == b"\x89PNG"
    assert not residuals_png([], tmp_path / "none.png", "t")


def test_regression_report_without_rows_says_why(tmp_path):
    from h2o_tasks import report

    files = report.write(tmp_path, _Model(), None, _regression_cfg(), {"rmse": 1.0}, "v1", frame=None)
    assert files == ["index.html"]
    assert "No residuals plot" in (tmp_path / "index.html").read_text()
