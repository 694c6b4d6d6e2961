//! What liverseg concludes about its own segmentation before anything is
//! written or sent: whether what it found can be a liver at all, whether the
//! scan covers the whole liver, and whether the model was unsure. The
//! inference crate decides; every result, record and API carries the same
//! [`Assessment`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The verdict on one segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// False when nothing plausible as a liver was found: no SEG and no
    /// mesh are made, only a report that says why.
    pub liver_found: bool,
    /// Why no liver was reported (`None` when one was found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_liver: Option<NoLiver>,
    pub coverage: Coverage,
    /// Short machine-readable flags: `no_liver`, `partial_coverage`,
    /// `uncertain`.
    pub flags: Vec<Flag>,
    /// Pixels whose logit lay near the threshold, per pixel called liver
    /// (on the network's fixed 1.5 mm grid): the model's own doubt.
    pub uncertainty: f64,
}

impl Assessment {
    /// What a reader must know before using the volume, short enough for
    /// a series description: empty when there is nothing to say.
    pub fn caveat(&self) -> String {
        caveat(&self.coverage.cut, self.flags.contains(&Flag::Uncertain))
    }
}

/// "partial, cut superior and inferior; uncertain" (see [`Assessment::caveat`]).
pub fn caveat(cut: &[Side], uncertain: bool) -> String {
    let mut parts = Vec::new();
    if !cut.is_empty() {
        parts.push(format!("partial, cut {}", sides(cut)));
    }
    if uncertain {
        parts.push("uncertain".to_string());
    }
    parts.join("; ")
}

/// "superior, anterior and inferior".
pub fn sides(cut: &[Side]) -> String {
    let names: Vec<&str> = cut.iter().map(|s| s.as_str()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

/// Why what the network found is not reported as a liver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoLiver {
    pub reason: NoLiverReason,
    /// The figures behind the reason, in words (no patient data).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoLiverReason {
    /// The network marked nothing.
    NothingFound,
    /// Too little tissue for a liver the scan covers whole (or even for a
    /// part of one).
    TooSmall,
    /// The body at the level of the finding is too narrow for an adult
    /// trunk (a head, a limb).
    NotATrunk,
    /// The finding lies on the patient's left.
    WrongSide,
    /// The finding is spread over many pieces, none of them dominant.
    Scattered,
    /// The finding's density is not that of soft tissue.
    NotSoftTissue,
}

impl NoLiverReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NoLiverReason::NothingFound => "nothing_found",
            NoLiverReason::TooSmall => "too_small",
            NoLiverReason::NotATrunk => "not_a_trunk",
            NoLiverReason::WrongSide => "wrong_side",
            NoLiverReason::Scattered => "scattered",
            NoLiverReason::NotSoftTissue => "not_soft_tissue",
        }
    }
}

/// Whether the scan holds the whole liver, and where it is cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Coverage {
    pub complete: bool,
    /// The sides where the liver reaches the first or last slice or the
    /// edge of the field of view.
    pub cut: Vec<Side>,
}

impl Coverage {
    pub fn complete() -> Coverage {
        Coverage {
            complete: true,
            cut: Vec::new(),
        }
    }

    /// "superior and inferior", for reports.
    pub fn sides(&self) -> String {
        sides(&self.cut)
    }
}

/// A side of the patient (anatomical directions, not image ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Superior,
    Inferior,
    Anterior,
    Posterior,
    Right,
    Left,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Superior => "superior",
            Side::Inferior => "inferior",
            Side::Anterior => "anterior",
            Side::Posterior => "posterior",
            Side::Right => "right",
            Side::Left => "left",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    NoLiver,
    PartialCoverage,
    Uncertain,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::NoLiver => "no_liver",
            Flag::PartialCoverage => "partial_coverage",
            Flag::Uncertain => "uncertain",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_summary_json_names_it() {
        let a = Assessment {
            liver_found: true,
            no_liver: None,
            coverage: Coverage {
                complete: false,
                cut: vec![Side::Superior, Side::Inferior],
            },
            flags: vec![Flag::PartialCoverage],
            uncertainty: 0.1,
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["coverage"]["cut"][0], "superior");
        assert_eq!(v["flags"][0], "partial_coverage");
        assert!(v.get("no_liver").is_none());
        assert_eq!(a.caveat(), "partial, cut superior and inferior");
        let back: Assessment = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }
}
