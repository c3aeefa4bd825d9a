//! The checks of a churn model read from a model file: every field used to score (and the
//! standard errors the next run's drift check reads), each failure with its JSON path.

use crate::models::saved::InvalidField;

use super::{feature_column, ChurnModel, FEATURES, INTERCEPT, MIN_STD};

impl ChurnModel {
    /// Checks every field used to score; the first bad one comes back with its JSON path
    /// relative to the model (`features[3].std`). The features must be exactly the ones this
    /// build computes ([`FEATURES`]), each once, in any order.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let mut seen = [None::<usize>; FEATURES.len()];
        for (i, f) in self.features.iter().enumerate() {
            let at = |field: &str| format!("features[{i}].{field}");
            let Some(col) = feature_column(&f.name) else {
                return Err(InvalidField::new(
                    at("name"),
                    format!(
                        "must be a feature this build computes ({})",
                        FEATURES.join(", ")
                    ),
                    format_args!("{:?}", f.name),
                ));
            };
            if let Some(first) = seen[col] {
                return Err(InvalidField::new(
                    at("name"),
                    format!("must be listed once (also features[{first}].name)"),
                    format_args!("{:?}", f.name),
                ));
            }
            seen[col] = Some(i);
            if !f.mean.is_finite() {
                return Err(InvalidField::new(at("mean"), "must be finite", f.mean));
            }
            if !(f.std.is_finite() && f.std >= MIN_STD) {
                return Err(InvalidField::new(
                    at("std"),
                    format!(
                        "must be finite and >= {MIN_STD:e} (a fit gives a constant feature std 1)"
                    ),
                    f.std,
                ));
            }
        }
        if let Some(missing) = seen.iter().position(Option::is_none) {
            return Err(InvalidField::new(
                "features",
                format!(
                    "must list all {} features this build computes; {:?} is missing",
                    FEATURES.len(),
                    FEATURES[missing]
                ),
                format_args!("{} features", self.features.len()),
            ));
        }
        if self.coefficients.len() != self.features.len() {
            return Err(InvalidField::new(
                "coefficients",
                format!("must hold one value per feature ({})", self.features.len()),
                format_args!("{} values", self.coefficients.len()),
            ));
        }
        if let Some((i, c)) = self
            .coefficients
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_finite())
        {
            return Err(InvalidField::new(
                format!("coefficients[{i}]"),
                "must be finite",
                c,
            ));
        }
        if !self.intercept.is_finite() {
            return Err(InvalidField::new(
                "intercept",
                "must be finite",
                self.intercept,
            ));
        }
        // Not used to score, but read by the next run's drift check: a name it cannot match
        // or a value that is no standard error would make that comparison meaningless.
        for (name, se) in self.std_errors.iter().flatten() {
            if name != INTERCEPT && feature_column(name).is_none() {
                return Err(InvalidField::new(
                    format!("std_errors.{name}"),
                    "must be named after a feature this build computes or `intercept`",
                    format_args!("{name:?}"),
                ));
            }
            if !(se.is_finite() && *se > 0.0) {
                return Err(InvalidField::new(
                    format!("std_errors.{name}"),
                    "must be finite and > 0",
                    se,
                ));
            }
        }
        if let Some(b) = &self.boosted {
            b.validate().map_err(|e| e.within("boosted"))?;
        }
        if let Some(b) = &self.btyd_buy_again {
            if self.boosted.is_some() {
                return Err(InvalidField::new(
                    "btyd_buy_again",
                    "must be absent when `boosted` is set (one champion scores)",
                    "both set",
                ));
            }
            b.validate().map_err(|e| e.within("btyd_buy_again"))?;
        }
        Ok(())
    }
}
