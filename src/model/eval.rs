//! Classification metrics for the category model: per-class precision/recall/F1, confusion
//! matrix, accuracy, macro-F1, coverage and accuracy above confidence thresholds, a reliability
//! table and the expected calibration error.
//!
//! Used by cross-validation during training and by `citypulse eval`. The threshold table is what
//! an operator reads to choose the triage threshold (below it, events go to a person).

use std::fmt;

use serde::{Deserialize, Serialize};

use std::path::Path;

use super::{read_raw_sample, read_segmented_tsv, CategoryModel, Labelled, ModelError};
use crate::text::segment::Segmenter;

/// Confidence thresholds reported: 0.50, 0.55 … 0.95.
pub const THRESHOLDS: [f32; 10] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Bins for expected calibration error.
const ECE_BINS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub category: String,
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    /// Number of true examples of this class.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdMetrics {
    pub threshold: f32,
    /// Share of examples whose confidence is at least `threshold`.
    pub coverage: f32,
    /// Accuracy among those examples (0 when none).
    pub accuracy: f32,
}

/// One bin of the reliability table: predictions whose confidence is in `[lower, upper)` (the
/// last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f32,
    pub upper: f32,
    pub count: usize,
    /// Mean confidence in the bin (0 when empty).
    pub confidence: f32,
    /// Share right in the bin (0 when empty); calibrated means close to `confidence`.
    pub accuracy: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub examples: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[truth][predicted]`, classes in `per_class` order.
    pub confusion: Vec<Vec<usize>>,
    pub thresholds: Vec<ThresholdMetrics>,
    /// Expected calibration error over 10 equal-width confidence bins.
    pub ece: f32,
    /// The bins the ECE is computed from.
    pub reliability: Vec<ReliabilityBin>,
    /// The triage threshold these predictions support: the lowest on the 0.01 grid whose
    /// auto-routed share stays ≥ [`super::train::TARGET_ROUTED_ACCURACY`] right (see
    /// [`lowest_threshold_reaching`]); `None` when no threshold does.
    #[serde(default)]
    pub triage: Option<ThresholdMetrics>,
}

impl EvalReport {
    /// Metrics from true class indices and predicted (class index, confidence) pairs.
    /// Panics if the slices differ in length or an index is out of range: callers build both.
    pub fn from_predictions(
        categories: &[String],
        truth: &[usize],
        predicted: &[(usize, f32)],
    ) -> EvalReport {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let k = categories.len();
        let n = truth.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &(p, _)) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: usize = confusion[c].iter().sum();
                let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
                let precision = ratio(tp, predicted_c);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    category: categories[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        // Classes absent from the evaluation set say nothing about the model: leave them out of
        // the macro average rather than count them as F1 = 0.
        let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|m| m.f1).sum::<f32>() / present.len() as f32
        };
        let thresholds = THRESHOLDS
            .iter()
            .map(|&threshold| coverage_at(truth, predicted, threshold))
            .collect();
        let mut bins = [(0usize, 0usize, 0f64); ECE_BINS];
        for (&t, &(p, conf)) in truth.iter().zip(predicted) {
            let bin = ((conf.clamp(0.0, 1.0) * ECE_BINS as f32) as usize).min(ECE_BINS - 1);
            bins[bin].0 += 1;
            bins[bin].1 += usize::from(t == p);
            bins[bin].2 += f64::from(conf);
        }
        let ece = if n == 0 {
            0.0
        } else {
            bins.iter()
                .filter(|b| b.0 > 0)
                .map(|&(count, right, conf_sum)| {
                    let gap = (right as f64 / count as f64 - conf_sum / count as f64).abs();
                    gap * count as f64 / n as f64
                })
                .sum::<f64>() as f32
        };
        let reliability = bins
            .iter()
            .enumerate()
            .map(|(i, &(count, right, conf_sum))| ReliabilityBin {
                lower: i as f32 / ECE_BINS as f32,
                upper: (i + 1) as f32 / ECE_BINS as f32,
                count,
                confidence: if count == 0 {
                    0.0
                } else {
                    (conf_sum / count as f64) as f32
                },
                accuracy: ratio(right, count),
            })
            .collect();
        EvalReport {
            examples: n,
            accuracy: ratio(correct, n),
            macro_f1,
            per_class,
            confusion,
            thresholds,
            ece,
            reliability,
            triage: lowest_threshold_reaching(
                truth,
                predicted,
                super::train::TARGET_ROUTED_ACCURACY,
            ),
        }
    }
}

/// Share of predictions whose confidence is at least `threshold`, and the accuracy among them.
pub fn coverage_at(
    truth: &[usize],
    predicted: &[(usize, f32)],
    threshold: f32,
) -> ThresholdMetrics {
    let (covered, right) =
        truth
            .iter()
            .zip(predicted)
            .fold((0usize, 0usize), |(covered, right), (&t, &(p, conf))| {
                if conf >= threshold {
                    (covered + 1, right + usize::from(t == p))
                } else {
                    (covered, right)
                }
            });
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    ThresholdMetrics {
        threshold,
        coverage: ratio(covered, truth.len()),
        accuracy: ratio(right, covered),
    }
}

/// Step of the grid the triage threshold is chosen on (0.50, 0.51 … 0.99): finer than the
/// reported [`THRESHOLDS`], so that the shipped threshold does not give away coverage between
/// two reported rows.
pub const TRIAGE_GRID_STEP: f32 = 0.01;

/// The lowest threshold on the 0.50 … 0.99 grid from which on every higher grid threshold that
/// still covers something keeps accuracy ≥ `target`, with its coverage and accuracy. Requiring
/// the whole tail (not just the one row) keeps a lucky dip in the curve from being chosen.
/// `None` when even 0.99 falls short.
pub fn lowest_threshold_reaching(
    truth: &[usize],
    predicted: &[(usize, f32)],
    target: f32,
) -> Option<ThresholdMetrics> {
    let steps = ((0.99 - 0.5) / TRIAGE_GRID_STEP).round() as usize;
    let mut chosen = None;
    for i in (0..=steps).rev() {
        let threshold = ((0.5 + i as f32 * TRIAGE_GRID_STEP) * 100.0).round() / 100.0;
        let metrics = coverage_at(truth, predicted, threshold);
        if metrics.coverage > 0.0 && metrics.accuracy < target {
            break;
        }
        if metrics.coverage > 0.0 {
            chosen = Some(metrics);
        }
    }
    chosen
}

/// Evaluates `model` on labelled token lists. A label the model does not know is an error naming
/// the example, since it would otherwise be silently counted as a miss.
pub fn evaluate(model: &CategoryModel, examples: &[Labelled]) -> Result<EvalReport, ModelError> {
    let categories = model.categories();
    let mut truth = Vec::with_capacity(examples.len());
    let mut predicted = Vec::with_capacity(examples.len());
    for (i, example) in examples.iter().enumerate() {
        let t = categories
            .iter()
            .position(|c| *c == example.label)
            .ok_or_else(|| ModelError::UnknownLabel {
                index: i,
                label: example.label.clone(),
            })?;
        truth.push(t);
        predicted.push(model.predict_index(&example.tokens));
    }
    Ok(EvalReport::from_predictions(categories, &truth, &predicted))
}

/// Evaluates `model` on a labelled file (`citypulse eval`). Two formats are accepted, told apart
/// by the header: the raw sample (a header naming 一级分类, 留言主题 and 留言详情), whose subject
/// and body are segmented with `segmenter` exactly as the pipeline does; or the pre-segmented
/// `label<TAB>tokens` TSV, used as is.
pub fn evaluate_file(
    model: &CategoryModel,
    segmenter: &Segmenter,
    path: &Path,
) -> Result<EvalReport, ModelError> {
    let examples = read_labelled_file(segmenter, path)?;
    evaluate(model, &examples)
}

/// Reads either labelled format (see [`evaluate_file`]) into token lists.
pub fn read_labelled_file(segmenter: &Segmenter, path: &Path) -> Result<Vec<Labelled>, ModelError> {
    if is_raw_sample(path)? {
        Ok(read_raw_sample(path)?
            .into_iter()
            .map(|raw| Labelled {
                tokens: segmenter.segment(&raw.text, 0).owned_tokens(),
                label: raw.label,
            })
            .collect())
    } else {
        read_segmented_tsv(path)
    }
}

fn is_raw_sample(path: &Path) -> Result<bool, ModelError> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut first = Vec::new();
    // A header is short; a longer first line is data, whatever it holds.
    std::io::BufReader::new(file)
        .take(64 * 1024)
        .read_until(b'\n', &mut first)
        .map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&first).contains("一级分类"))
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "examples {}  accuracy {:.4}  macro-F1 {:.4}  ECE {:.4}",
            self.examples, self.accuracy, self.macro_f1, self.ece
        )?;
        writeln!(
            f,
            "\n{:<16} {:>9} {:>9} {:>9} {:>8}",
            "category", "precision", "recall", "F1", "support"
        )?;
        for m in &self.per_class {
            writeln!(
                f,
                "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                pad(&m.category, 16),
                m.precision,
                m.recall,
                m.f1,
                m.support
            )?;
        }
        writeln!(
            f,
            "\nconfusion (rows: truth, columns: predicted, same order as above)"
        )?;
        for (m, row) in self.per_class.iter().zip(&self.confusion) {
            write!(f, "{:<16}", pad(&m.category, 16))?;
            for count in row {
                write!(f, " {count:>5}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "\n{:>9} {:>9} {:>9}",
            "threshold", "coverage", "accuracy"
        )?;
        for t in &self.thresholds {
            writeln!(
                f,
                "{:>9.2} {:>9.4} {:>9.4}",
                t.threshold, t.coverage, t.accuracy
            )?;
        }
        let target = super::train::TARGET_ROUTED_ACCURACY * 100.0;
        match &self.triage {
            Some(t) => writeln!(
                f,
                "triage threshold for ≥ {target:.0} % right on this data (0.01 grid): {:.2} \
                 ({:.1} % auto-routed, {:.1} % of them right)",
                t.threshold,
                t.coverage * 100.0,
                t.accuracy * 100.0
            )?,
            None => writeln!(f, "no threshold reaches {target:.0} % right on this data")?,
        }
        writeln!(
            f,
            "\nreliability (ECE {:.4})\n{:>11} {:>7} {:>10} {:>9}",
            self.ece, "confidence", "count", "mean conf", "accuracy"
        )?;
        for b in self.reliability.iter().filter(|b| b.count > 0) {
            writeln!(
                f,
                "  {:.1}–{:.1}  {:>7} {:>10.4} {:>9.4}",
                b.lower, b.upper, b.count, b.confidence, b.accuracy
            )?;
        }
        Ok(())
    }
}

/// Pads a category name to a display width, counting CJK characters as two columns so the
/// table lines up in a terminal.
fn pad(name: &str, width: usize) -> String {
    let shown: usize = name.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum();
    let mut s = name.to_string();
    s.extend(std::iter::repeat_n(' ', width.saturating_sub(shown)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> Vec<String> {
        vec!["甲".into(), "乙".into()]
    }

    #[test]
    fn perfect_predictions_score_one() {
        let r = EvalReport::from_predictions(&cats(), &[0, 1, 1], &[(0, 0.9), (1, 0.8), (1, 0.7)]);
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.macro_f1, 1.0);
        assert_eq!(r.confusion, vec![vec![1, 0], vec![0, 2]]);
    }

    #[test]
    fn per_class_figures_follow_the_confusion_matrix() {
        // truth 0,0,1,1 ; predicted 0,1,1,1
        let r = EvalReport::from_predictions(
            &cats(),
            &[0, 0, 1, 1],
            &[(0, 0.9), (1, 0.6), (1, 0.9), (1, 0.9)],
        );
        assert_eq!(r.accuracy, 0.75);
        assert_eq!(r.per_class[0].precision, 1.0);
        assert_eq!(r.per_class[0].recall, 0.5);
        assert!((r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(r.per_class[1].recall, 1.0);
        let t = &r.thresholds[THRESHOLDS
            .iter()
            .position(|&t| t == 0.9)
            .expect("0.9 listed")];
        assert_eq!(t.coverage, 0.75);
        assert_eq!(t.accuracy, 1.0);
        // Wrong at 0.6, right from 0.9 up: the operator's threshold is 0.61.
        let triage = r.triage.as_ref().expect("a threshold reaches 97 %");
        assert!((triage.threshold - 0.61).abs() < 1e-6, "{triage:?}");
        assert_eq!((triage.coverage, triage.accuracy), (0.75, 1.0));
        assert!(r.to_string().contains("0.61 (75.0 % auto-routed"), "{r}");
    }

    #[test]
    fn ece_is_the_weighted_gap_between_confidence_and_accuracy() {
        // Two examples in the 0.9 bin, one right: accuracy 0.5 vs confidence 0.9 → ECE 0.4.
        let r = EvalReport::from_predictions(&cats(), &[0, 0], &[(0, 0.9), (1, 0.9)]);
        assert!((r.ece - 0.4).abs() < 1e-6, "{}", r.ece);
        let bin = &r.reliability[9];
        assert_eq!((bin.count, bin.accuracy), (2, 0.5));
        assert!((bin.confidence - 0.9).abs() < 1e-6);
        assert_eq!(r.reliability.iter().map(|b| b.count).sum::<usize>(), 2);
    }

    #[test]
    fn empty_evaluation_is_defined() {
        let r = EvalReport::from_predictions(&cats(), &[], &[]);
        assert_eq!(r.examples, 0);
        assert!(r.accuracy == 0.0 && r.ece == 0.0 && r.macro_f1 == 0.0);
        assert!(r.to_string().contains("examples 0"));
    }

    #[test]
    fn triage_threshold_is_the_lowest_grid_point_whose_tail_reaches_the_target() {
        // Right at 0.95 and 0.90, wrong at 0.80, right at 0.72 and 0.60, wrong at 0.55.
        // For a 0.75 target, 0.60 passes on its own row (4/5) but 0.80 does not (2/3), so the
        // tail rule stops at 0.81.
        let truth = [0, 0, 0, 0, 0, 0];
        let predicted = [
            (0, 0.95),
            (0, 0.90),
            (1, 0.80),
            (0, 0.72),
            (0, 0.60),
            (1, 0.55),
        ];
        let t = lowest_threshold_reaching(&truth, &predicted, 0.75).expect("a threshold");
        assert!((t.threshold - 0.81).abs() < 1e-6, "{t:?}");
        assert!((t.coverage - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(t.accuracy, 1.0);
        // Every row reaches 0.6, so the whole grid qualifies and 0.50 covers everything.
        let lenient = lowest_threshold_reaching(&truth, &predicted, 0.6).expect("a threshold");
        assert!((lenient.threshold - 0.5).abs() < 1e-6, "{lenient:?}");
        assert_eq!(lenient.coverage, 1.0);
        assert!((lenient.accuracy - 4.0 / 6.0).abs() < 1e-6);
        // Nothing confident enough to be right at 97 %.
        assert_eq!(lowest_threshold_reaching(&[0], &[(1, 0.999)], 0.97), None);
    }
}
