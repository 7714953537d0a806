"""The readable report next to each model: `report.md` with PNG plots, from the model card.

Plots are drawn with matplotlib's Agg backend at a fixed size and resolution, without the
software-version stamp in the PNG metadata, so the files are the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from numpy.typing import NDArray
from sklearn.metrics import roc_curve

from services.score.training import evidence, metrics

Labels = NDArray[np.int64]
Values = NDArray[np.float64]
Card = dict[str, Any]

DOTS_PER_INCH = 100
FAIRNESS_ATTRIBUTES = ("sex", "age", "education", "marriage")
FIGURE_SIZE = (7.0, 4.5)
MODEL_COLOUR = "#1f5f8b"
BASELINE_COLOUR = "#c2571a"
GOOD_COLOUR = "#4c9a2a"
BAD_COLOUR = "#b23a48"


def write_plots(
    directory: Path,
    *,
    labels: NDArray[np.int64],
    log_odds: NDArray[np.float64],
    baseline_log_odds: NDArray[np.float64],
    fold_of_row: NDArray[np.int64],
    card: dict[str, Any],
) -> list[str]:
    """Draws every plot into `directory`; returns the file names in report order."""
    plt.rcParams.update({"font.size": 9})
    scores = evidence.scores_from_log_odds(log_odds)
    drawings: list[tuple[str, Callable[[Axes], None]]] = [
        ("roc.png", lambda axes: _roc(axes, labels, log_odds, baseline_log_odds, fold_of_row)),
        ("auc_by_fold.png", lambda axes: _rounds(axes, card)),
        ("ks.png", lambda axes: _ks(axes, labels, scores)),
        ("calibration.png", lambda axes: _calibration(axes, card)),
        ("score_distribution.png", lambda axes: _distribution(axes, labels, scores)),
        ("population_stability.png", lambda axes: _stability(axes, scores, fold_of_row)),
        ("fairness.png", lambda axes: _fairness(axes, card)),
        ("feature_importance.png", lambda axes: _importance(axes, card)),
    ]
    names = []
    for name, draw in drawings:
        figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DOTS_PER_INCH)
        draw(axes)
        figure.tight_layout()
        figure.savefig(directory / name, dpi=DOTS_PER_INCH, metadata={"Software": None})
        plt.close(figure)
        names.append(name)
    return names


def _roc(
    axes: Axes,
    labels: Labels,
    log_odds: Values,
    baseline_log_odds: Values,
    fold_of_row: Labels,
) -> None:
    for fold in range(int(fold_of_row.max()) + 1):
        in_fold = fold_of_row == fold
        false_positive, true_positive, _ = roc_curve(labels[in_fold], log_odds[in_fold])
        axes.plot(false_positive, true_positive, color=MODEL_COLOUR, alpha=0.25, linewidth=0.8)
    for values, colour, name in (
        (log_odds, MODEL_COLOUR, "LightGBM (out of fold)"),
        (baseline_log_odds, BASELINE_COLOUR, "scorecard baseline (out of fold)"),
    ):
        false_positive, true_positive, _ = roc_curve(labels, values)
        auc = metrics.auc(values, labels)
        axes.plot(false_positive, true_positive, color=colour, label=f"{name}, AUC {auc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axes.set(
        xlabel="share of non-defaults flagged",
        ylabel="share of defaults flagged",
        title="ROC: pooled out-of-fold (faint lines: each fold)",
    )
    axes.legend(loc="lower right")


def _rounds(axes: Axes, card: Card) -> None:
    per_fold = card["cross_validation"]["auc"]["per_fold"]
    chosen = card["training"]["boosting_rounds"]
    axes.bar(range(1, len(per_fold) + 1), per_fold, color=MODEL_COLOUR, label="LightGBM")
    mean = card["cross_validation"]["auc"]["mean"]
    axes.axhline(mean, color="black", linestyle="--", linewidth=0.8, label=f"mean {mean:.4f}")
    axes.axhline(0.78, color=BAD_COLOUR, linestyle=":", linewidth=0.8, label="target 0.78")
    baseline = card["baseline_scorecard"]["auc"]["per_fold"]
    axes.plot(range(1, len(baseline) + 1), baseline, "o", color=BASELINE_COLOUR, label="scorecard")
    axes.set_ylim(min(per_fold + baseline) - 0.02, max(per_fold + baseline) + 0.02)
    axes.set(xlabel="fold", ylabel="AUC", title=f"AUC per fold at the chosen {chosen} rounds")
    axes.legend(loc="upper right", fontsize=7)


def _ks(axes: Axes, labels: Labels, scores: Labels) -> None:
    grid = np.arange(350, 951)
    for mask, colour, name in (
        (labels == 1, BAD_COLOUR, "defaults"),
        (labels == 0, GOOD_COLOUR, "non-defaults"),
    ):
        share_below = np.searchsorted(np.sort(scores[mask]), grid, side="right") / mask.sum()
        axes.plot(grid, share_below, color=colour, label=f"{name}: share scoring at or below")
    ks = metrics.ks(-scores.astype(np.float64), labels)
    axes.set(xlabel="score", ylabel="cumulative share", title=f"Kolmogorov-Smirnov: {ks:.3f}")
    axes.set_xlim(350, 700)
    axes.legend(loc="lower right")


def _calibration(axes: Axes, card: Card) -> None:
    bands = [band for band in card["calibration"]["by_score_band"] if band["rows"]]
    positions = np.arange(len(bands))
    width = 0.4
    axes.bar(
        positions - width / 2,
        [band["predicted_default_rate"] for band in bands],
        width,
        color=MODEL_COLOUR,
        label="predicted",
    )
    axes.bar(
        positions + width / 2,
        [band["observed_default_rate"] for band in bands],
        width,
        color=BAD_COLOUR,
        label="observed",
    )
    axes.set_xticks(positions, [f"{band['band']}\n({band['rows']})" for band in bands])
    axes.set(
        xlabel="score band (rows)",
        ylabel="default rate",
        title=f"Calibration by score band, Brier {card['calibration']['brier_out_of_fold']:.4f}",
    )
    axes.legend()


def _distribution(axes: Axes, labels: Labels, scores: Labels) -> None:
    bins = [float(edge) for edge in range(350, 801, 10)]
    axes.hist(
        [scores[labels == 0], scores[labels == 1]],
        bins=bins,
        stacked=True,
        color=[GOOD_COLOUR, BAD_COLOUR],
        label=["non-defaults", "defaults"],
    )
    for threshold in evidence.FAIRNESS_THRESHOLDS:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=0.8)
    axes.set(xlabel="score (out of fold)", ylabel="rows", title="Score distribution")
    axes.legend()


def _stability(axes: Axes, scores: Labels, fold_of_row: Labels) -> None:
    labels = evidence.band_labels()
    positions = np.arange(len(labels))
    fold_count = int(fold_of_row.max()) + 1
    width = 0.8 / fold_count
    for fold in range(fold_count):
        counts = evidence.band_counts(scores[fold_of_row == fold])
        axes.bar(
            positions + (fold - (fold_count - 1) / 2) * width,
            counts / counts.sum(),
            width,
            label=f"fold {fold + 1}",
        )
    axes.set_xticks(positions, labels, rotation=30)
    axes.set(xlabel="score band", ylabel="share of the fold", title="Score bands per fold")
    axes.legend(ncol=fold_count, fontsize=7)


def _fairness(axes: Axes, card: Card) -> None:
    names: list[str] = []
    ratios: dict[str, list[float]] = {
        str(threshold): [] for threshold in evidence.FAIRNESS_THRESHOLDS
    }
    for attribute in FAIRNESS_ATTRIBUTES:
        audit = card["fairness"][attribute]
        for group in audit["groups"]:
            names.append(f"{attribute}: {group['group']}")
            for threshold in ratios:
                ratio = audit["approval_ratios"][threshold]["ratio_to_highest"][group["group"]]
                ratios[threshold].append(0.0 if ratio is None else ratio)
    positions = np.arange(len(names))
    width = 0.8 / len(ratios)
    for index, (threshold, values) in enumerate(ratios.items()):
        offset = (index - (len(ratios) - 1) / 2) * width
        axes.barh(positions + offset, values, width, label=f"approved at {threshold}")
    axes.axvline(evidence.FOUR_FIFTHS, color=BAD_COLOUR, linestyle="--", label="four-fifths")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set(
        xlabel="approval rate / highest group's",
        title="Approval-rate ratios (no bar: nobody in any group approved)",
    )
    axes.set_xlim(0, 1.05)
    axes.legend(loc="lower right", fontsize=7)


def _importance(axes: Axes, card: Card) -> None:
    features = sorted(card["features"], key=lambda feature: feature["gain_share"])
    axes.barh(
        [feature["name"] for feature in features],
        [feature["gain_share"] for feature in features],
        color=MODEL_COLOUR,
    )
    axes.set(xlabel="share of total split gain", title="What the model relies on")


def markdown(card: dict[str, Any], plots: Sequence[str]) -> str:
    """The report: the card's evidence in prose and tables, with the plots embedded."""
    validation = card["cross_validation"]
    scorecard = card["baseline_scorecard"]
    parity = card["parity"]
    lines = [
        f"# Sesame score model {card['model_version']}",
        "",
        card["purpose"],
        "",
        "Everything below is measured on out-of-fold predictions (each row scored by the fold "
        "model that never saw it), so it estimates performance on new people. The numbers are "
        "also in `model_card.json`.",
        "",
        "## Summary",
        "",
        "| measure | LightGBM | scorecard baseline |",
        "|---|---|---|",
        f"| AUC, {validation['folds']}-fold mean ± std | {_pm(validation['auc'])} | "
        f"{_pm(scorecard['auc'])} |",
        f"| KS, mean ± std | {_pm(validation['ks'])} | {_pm(scorecard['ks'])} |",
        f"| Brier score, mean ± std | {_pm(validation['brier'])} | {_pm(scorecard['brier'])} |",
        f"| AUC, pooled out of fold | {validation['pooled_out_of_fold']['auc']:.4f} | "
        f"{scorecard['pooled_out_of_fold']['auc']:.4f} |",
        "",
        f"Data: `{card['data']['file']}`, {card['data']['rows']} rows, "
        f"{card['data']['default_rate']:.2%} defaults, sha256 `{card['data']['csv_sha256']}`. "
        f"{card['data']['source']}.",
        "",
        f"Model: {card['training']['library']}, {card['training']['trees']} trees "
        f"({card['training']['leaves']} leaves), {card['training']['boosting_rounds_chosen_by']}.",
        "",
        "![ROC curves](roc.png)",
        "",
        "![AUC per fold](auc_by_fold.png)",
        "",
        "![KS](ks.png)",
        "",
        *_intended_use(card),
        *_monotone_section(card),
        *_reasons_section(card),
        *_without_credit_line(card),
        *_sesame_record(card),
        "## Features",
        "",
        "Behaviour only: the credit line, statement balances, payments and repayment status, "
        "and Sesame's own obligations with their outcomes, read from the ledger's credit "
        "history. "
        f"{', '.join(card['protected_attributes']['columns'])} are "
        f"{card['protected_attributes']['use']}.",
        "",
        "| feature | meaning | monotone | share of gain |",
        "|---|---|---|---|",
        *[
            f"| `{feature['name']}` | {feature['description']} | "
            f"{_constraint(feature['monotone_constraint'])} | {feature['gain_share']:.1%} |"
            for feature in card["features"]
        ],
        "",
        "Missing (NaN) when the history has no credit line: "
        + ", ".join(
            f"`{feature['name']}`"
            for feature in card["features"]
            if feature["missing_without_credit_line"]
        )
        + ".",
        "",
        "![Feature importance](feature_importance.png)",
        "",
        "How the model shaped each feature (mean contribution to the log-odds of default by "
        "value, measured from the reference profile at 600, training rows in ten groups; "
        "positive raises the risk). Every feature is monotone, so each row of the table moves "
        "one way.",
        "",
        *_profile_tables(card),
        f"Monotonicity on real histories: {card['monotonicity']['variants']} variants "
        f"({card['monotonicity']['built_from']}); "
        f"{card['monotonicity']['variants_with_lower_risk']} showed a lower risk.",
        "",
        "## Calibration",
        "",
        f"Brier score {card['calibration']['brier_out_of_fold']:.4f} (pooled out of fold).",
        "",
        "| score band | rows | predicted default rate | observed default rate |",
        "|---|---|---|---|",
        *[
            f"| {band['band']} | {band['rows']} | {_rate(band['predicted_default_rate'])} | "
            f"{_rate(band['observed_default_rate'])} |"
            for band in card["calibration"]["by_score_band"]
        ],
        "",
        "![Calibration](calibration.png)",
        "",
        "## Score distribution",
        "",
        _scaling_sentence(card["scaling"]),
        "",
        f"Mean score {card['score_distribution']['mean']:.0f}; median "
        f"{card['score_distribution']['percentiles']['50']:.0f}; "
        + "; ".join(
            f"{share:.1%} score {threshold} or more"
            for threshold, share in card["score_distribution"]["share_at_or_above"].items()
        )
        + ".",
        "",
        "![Score distribution](score_distribution.png)",
        "",
        "## Population stability between folds",
        "",
        "Each fold's score-band distribution against the other folds' together: "
        + ", ".join(f"{value:.4f}" for value in card["population_stability"]["per_fold"])
        + f" (largest {card['population_stability']['max']:.4f}; "
        f"{card['population_stability']['reading']}).",
        "",
        "![Score bands per fold](population_stability.png)",
        "",
        "## Fairness",
        "",
        f"Approval means a score at or above the threshold. Rule: {card['fairness']['rule']}.",
        "",
        *_fairness_tables(card["fairness"]),
        *_age_proxy(card["fairness"]["credit_line_as_age_proxy"]),
        "![Approval-rate ratios](fairness.png)",
        "",
        *_drift_section(card),
        "## Parity of the ONNX graph with LightGBM",
        "",
        f"Tolerance {parity['tolerance']:g}; passed: {'yes' if parity['passed'] else 'NO'}.",
        "",
        "| rows | count | log-odds | probability | bias + contributions vs log-odds |",
        "|---|---|---|---|---|",
        *[
            f"| {name.replace('_', ' ')} | {parity[name]['rows']} | "
            f"{parity[name]['max_abs_log_odds_error']:.2e} | "
            f"{parity[name]['max_abs_probability_error']:.2e} | "
            f"{parity[name]['max_abs_contribution_sum_error']:.2e} |"
            for name in ("training_rows", "rows_without_credit_line", "threshold_rows")
        ],
        "",
        f"Threshold rows: {parity['threshold_rows']['built_from']} "
        f"({parity['threshold_rows']['splits']} distinct splits).",
        "",
        "## Limitations",
        "",
        *[f"* {limitation}" for limitation in card["limitations"]],
        "",
    ]
    embedded = {line[line.index("(") + 1 : -1] for line in lines if line.startswith("![")}
    assert embedded == set(plots), f"every plot is embedded once: {embedded ^ set(plots)}"
    return "\n".join(lines)


def _without_credit_line(card: Card) -> list[str]:
    withheld = card["credit_line_withheld"]
    before = withheld["before_withholding"]
    contributions = card["contributions_by_value"]["without_credit_line"]["mean_contribution"]
    return [
        "## Without a credit line",
        "",
        f"The credit line was withheld from {withheld['share']:.0%} of the training rows "
        f"({withheld['rows']} rows; {withheld['chosen_by']}), so the model learnt to score a "
        f"history without one: {withheld['why']}.",
        "",
        "AUC, 5-fold mean ± std, the same folds judged on the held-out rows as they are and with "
        "their line withheld:",
        "",
        "| model | with the credit line | without it | boosting rounds |",
        "|---|---|---|---|",
        f"| this model ({withheld['share']:.0%} of rows without the line) | "
        f"{_pm(withheld['auc']['with_credit_line'])} | "
        f"{_pm(withheld['auc']['without_credit_line'])} | "
        f"{card['training']['boosting_rounds']} |",
        f"| before: no line withheld | {_pm(before['auc']['with_credit_line'])} | "
        f"{_pm(before['auc']['without_credit_line'])} | {before['boosting_rounds']} |",
        "",
        f"Change in the full-information AUC: {withheld['full_information_auc_change']:+.4f}. "
        f"Before: {before['what']}.",
        "",
        "Mean contribution of each missing feature to the log-odds of default, over every "
        "training row without its line: "
        + ", ".join(f"`{name}` {value:+.3f}" for name, value in contributions.items())
        + ".",
        "",
    ]


def _sesame_record(card: Card) -> list[str]:
    section = card["sesame_obligations"]
    checked = card["monotonicity"]["sesame_obligations"]
    lines = [
        "## Sesame's own obligations",
        "",
        f"How they enter the features: {section['mapping']}. A default counts as "
        f"{section['default_months_late']} months late, the most the training data holds "
        f"({section['training_data_months_late_max']}). Assumed: {section['assumption']}.",
        "",
        f"Checked on training histories: {checked['variants']} variants ({checked['built_from']}); "
        f"{checked['on_time_variants_with_higher_risk']} paid on time raised the risk, "
        f"{checked['late_unpaid_or_defaulted_variants_with_lower_risk']} paid late, unpaid or "
        "defaulted lowered it, and "
        f"{checked['worse_outcome_with_lower_risk_than_better']} worse outcomes scored better "
        "than a better one. Mean score change: "
        + ", ".join(
            f"{name} {change:+.1f}" for name, change in checked["mean_score_change"].items()
        )
        + ".",
        "",
        "Worked examples, a user whose whole record is Sesame's own (a 3-yuan fee due on the 5th "
        "of each month), scored as the service scores them:",
        "",
        "| history | as of | score | probability of default | reasons |",
        "|---|---|---|---|---|",
    ]
    for example in section["worked_examples"]:
        if "thin_file" in example:
            cells = f"thin file ({example['thin_file'].replace('_', ' ')}) | | "
        else:
            cells = f"{example['score']} | {example['probability_of_default']:.1%} | " + " ".join(
                example["reasons"]
            )
        lines.append(f"| {example['history']} | {example['as_of']} | {cells} |")
    return [*lines, ""]


def _profile_tables(card: dict[str, Any]) -> list[str]:
    lines = ["| feature | value range: mean contribution |", "|---|---|"]
    for name in (feature["name"] for feature in card["features"]):
        groups = card["contributions_by_value"]["features"][name]
        cells = ", ".join(
            f"{group['lowest_value']:.3g} to {group['highest_value']:.3g}: "
            f"{group['mean_contribution']:+.3f}"
            for group in groups
        )
        lines.append(f"| `{name}` | {cells} |")
    return [*lines, ""]


def _intended_use(card: Card) -> list[str]:
    scale = card["score_scale"]
    return [
        "## Intended use and where the scale sits",
        "",
        card["intended_use"] + ".",
        "",
        f"On held-out rows ({scale['rows']}): scores from {scale['lowest_score']} to "
        f"{scale['highest_score']}; {scale['share_clamped_at_min']:.2%} clamped at 350; "
        + "; ".join(
            f"{share:.1%} at or above {cut_off}"
            for cut_off, share in scale["share_at_or_above"].items()
        )
        + ".",
        "",
    ]


def _monotone_section(card: Card) -> list[str]:
    section = card["monotone_where_a_person_can_act"]
    before, after = section["before"], section["after"]
    return [
        "## Monotone where a person can act",
        "",
        section["what"].capitalize()
        + ". Dropped: "
        + ", ".join(f"`{name}`" for name in section["dropped_features"])
        + ".",
        "",
        "| cross-validated AUC (5-fold mean) | with the credit line | without it |",
        "|---|---|---|",
        f"| before ({before['model_version']}) | {before['auc_with_credit_line']:.4f} | "
        f"{before['auc_without_credit_line']:.4f} |",
        f"| after ({after['model_version']}) | {after['auc_with_credit_line']:.4f} | "
        f"{after['auc_without_credit_line']:.4f} |",
        f"| change | {section['auc_change_with_credit_line']:+.4f} | "
        f"{section['auc_change_without_credit_line']:+.4f} |",
        "",
        f"Accepted cost: at most {section['accepted_auc_cost']} of AUC.",
        "",
    ]


def _reasons_section(card: Card) -> list[str]:
    reasons = card["reasons"]
    reference = reasons["reference_point"]
    return [
        "## Reasons and their reference point",
        "",
        f"Reference: {reference['what']}.",
        "",
        f"Attribution: {reasons['attribution']}.",
        "",
        f"Reasons given: {reasons['reasons_given']}.",
        "",
    ]


def _age_proxy(proxy: dict[str, Any]) -> list[str]:
    thresholds = list(proxy["with_credit_line"])
    lines = [
        "The credit line as a proxy for age (the same fold models, every held-out row scored "
        "with and without its line):",
        "",
        "| age band | median credit line | "
        + " | ".join(f"ratio at {t} with / without the line" for t in thresholds)
        + " |",
        "|---|---|" + "---|" * len(thresholds),
    ]
    for band, median in proxy["median_credit_line_minor"].items():
        cells = []
        for threshold in thresholds:
            ratios = [
                proxy[side][threshold]["ratio_to_highest"][band]
                for side in ("with_credit_line", "without_credit_line")
            ]
            cells.append(" / ".join("n/a" if r is None else f"{r:.2f}" for r in ratios))
        lines.append(f"| {band} | {median / 100:,.0f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"AUC {proxy['auc_with_credit_line']:.4f} with the line, "
        f"{proxy['auc_without_credit_line']:.4f} without (pooled out of fold). " + proxy["choice"],
        "",
    ]
    return lines


def _drift_section(card: Card) -> list[str]:
    drift = card["drift_reference"]
    return [
        "## Drift",
        "",
        "The score service compares the features and scores of the users it scores with the "
        f"training rows ({drift['rows']}): {drift['reading']}. The bins and shares are in "
        "`model_card.json` (`drift_reference`).",
        "",
    ]


def _fairness_tables(fairness: dict[str, Any]) -> list[str]:
    thresholds = [str(threshold) for threshold in fairness["thresholds"]]
    lines: list[str] = []
    for attribute in FAIRNESS_ATTRIBUTES:
        audit = fairness[attribute]
        lines += [
            f"By {attribute}:",
            "",
            "| group | rows | observed default rate | mean predicted | mean score | AUC | "
            + " | ".join(f"approved at {threshold} | ratio" for threshold in thresholds)
            + " |",
            "|---|---|---|---|---|---|" + "---|---|" * len(thresholds),
        ]
        for group in audit["groups"]:
            cells = []
            for threshold in thresholds:
                ratio = audit["approval_ratios"][threshold]["ratio_to_highest"][group["group"]]
                cells.append(
                    f"{group['approval_rate'][threshold]:.1%} | "
                    + ("n/a" if ratio is None else f"{ratio:.2f}")
                )
            lines.append(
                f"| {group['group']} | {group['rows']} | {group['observed_default_rate']:.1%} | "
                f"{group['mean_predicted_default_rate']:.1%} | {group['mean_score']:.0f} | "
                + ("n/a" if group["auc"] is None else f"{group['auc']:.3f}")
                + " | "
                + " | ".join(cells)
                + " |"
            )
        verdicts = []
        for threshold in thresholds:
            result = audit["approval_ratios"][threshold]
            if result["meets_four_fifths"] is None:
                verdicts.append(f"at {threshold}: not applicable, {result['note']}")
                continue
            verdicts.append(
                f"at {threshold} the lowest ratio is {result['lowest_ratio']:.2f} "
                f"({result['lowest_group']}), "
                + ("meeting" if result["meets_four_fifths"] else "**not meeting**")
                + " the four-fifths rule"
            )
        lines += ["", "; ".join(verdicts).capitalize() + ".", ""]
    findings = _fairness_findings(fairness)
    if findings:
        lines += ["Where the rule is not met:", "", *findings, ""]
    return lines


def _fairness_findings(fairness: dict[str, Any]) -> list[str]:
    """One sentence per failed check, with both groups' approval and observed default rates, so
    a reader can tell a difference in behaviour from a difference in treatment."""
    findings = []
    for attribute in FAIRNESS_ATTRIBUTES:
        audit = fairness[attribute]
        by_name = {group["group"]: group for group in audit["groups"]}
        for threshold, result in audit["approval_ratios"].items():
            if result["meets_four_fifths"] is not False:
                continue
            lowest = by_name[result["lowest_group"]]
            highest = max(audit["groups"], key=lambda group: group["approval_rate"][threshold])
            findings.append(
                f"* At {threshold}, {attribute} group {lowest['group']} is approved at "
                f"{lowest['approval_rate'][threshold]:.1%} against "
                f"{highest['approval_rate'][threshold]:.1%} for {highest['group']} "
                f"(ratio {result['lowest_ratio']:.2f}); their observed default rates are "
                f"{lowest['observed_default_rate']:.1%} and "
                f"{highest['observed_default_rate']:.1%}."
            )
    return findings


def _scaling_sentence(scaling: dict[str, Any]) -> str:
    at = scaling["probability_of_default_at"]
    return (
        f"{scaling['base_score']} points at good:bad odds of {scaling['base_good_bad_odds']:g}:1, "
        f"{scaling['points_to_double_odds']} points to double the odds, clamped to "
        f"[{scaling['score_min']}, {scaling['score_max']}]: "
        + ", ".join(
            f"{score} means a {probability:.1%} probability of default"
            for score, probability in at.items()
        )
        + "."
    )


def _pm(summary: dict[str, Any]) -> str:
    return f"{summary['mean']:.4f} ± {summary['std']:.4f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _constraint(direction: int) -> str:
    return {1: "risk never falls as it grows", -1: "risk never rises as it grows", 0: "free"}[
        direction
    ]
