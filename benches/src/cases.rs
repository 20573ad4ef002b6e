//! What `kstreams-bench run` runs: the systems (`ceiling`, `kstreams[-LABEL]`,
//! `kafka-streams[-txn]`, `quix`), the two apps, the throughput case names
//! (`<system>-<wc|orders>[-<eos|alos>]`) and the expansion of unlabelled
//! kstreams entries into one per `--kstreams-bin-dir` label.
//!
//! Apart from runner.rs (which starts the broker and the jobs) because it is
//! pure naming and parsing logic, shared by every phase and unit-tested alone.

/// Every throughput case, in the (interleaved) order they run in each round.
pub const ALL_CASES: &[&str] = &[
    "ceiling-wc",
    "kstreams-wc-eos",
    "kafka-streams-wc-eos",
    "quix-wc-eos",
    "kstreams-wc-alos",
    "ceiling-orders",
    "kstreams-orders-eos",
    "kafka-streams-orders-eos",
    "kstreams-orders-alos",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ceiling,
    Kstreams,
    KafkaStreams,
    Quix,
}

impl System {
    pub(crate) fn parse(s: &str) -> Result<System, String> {
        Ok(match s {
            "ceiling" => System::Ceiling,
            "kstreams" => System::Kstreams,
            "kafka-streams" => System::KafkaStreams,
            "quix" => System::Quix,
            _ => return Err(format!("unknown system '{s}'")),
        })
    }
}

/// A system, and for kstreams the label of its binaries (`kstreams-LABEL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sys {
    pub system: System,
    pub label: Option<String>,
}

impl Sys {
    /// `ceiling`, `kstreams`, `kstreams-LABEL`, `kafka-streams`,
    /// `kafka-streams-txn` or `quix`.
    pub(crate) fn parse(s: &str) -> Result<Sys, String> {
        if s == "kafka-streams-txn" {
            return Ok(Sys {
                system: System::KafkaStreams,
                label: Some(KS_TXN.into()),
            });
        }
        if let Some(l) = s.strip_prefix("kstreams-") {
            if !valid_label(l) {
                return Err(format!("unknown system '{s}'"));
            }
            return Ok(Sys {
                system: System::Kstreams,
                label: Some(l.to_string()),
            });
        }
        Ok(Sys {
            system: System::parse(s)?,
            label: None,
        })
    }

    pub fn name(&self) -> String {
        match (&self.system, &self.label) {
            (System::Ceiling, _) => "ceiling".into(),
            (System::Kstreams, None) => "kstreams".into(),
            (System::Kstreams, Some(l)) => format!("kstreams-{l}"),
            (System::KafkaStreams, None) => "kafka-streams".into(),
            (System::KafkaStreams, Some(l)) => format!("kafka-streams-{l}"),
            (System::Quix, _) => "quix".into(),
        }
    }

    /// Settings this system variant adds to its jobs.
    pub(crate) fn settings(&self) -> &'static [&'static str] {
        match (&self.system, self.label.as_deref()) {
            (System::KafkaStreams, Some(KS_TXN)) => &[KS_TXN_SETTING],
            _ => &[],
        }
    }
}

/// `kafka-streams-txn`: Kafka Streams with transactional state stores
/// (KIP-892, opt-in since 4.4): under exactly-once a crash no longer wipes
/// the local state, so recovery replays only the changelog's tail, as kstreams
/// does. The strongest Kafka Streams for the recovery comparison.
const KS_TXN: &str = "txn";
const KS_TXN_SETTING: &str = "enable.transactional.statestores=true";

/// Labels end up in topic names and must not look like an app or a guarantee.
pub(crate) fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["wc", "orders", "eos", "alos"].contains(&l)
}

/// Replaces every unlabelled kstreams entry by one per label (in label
/// order), and checks the labels of labelled ones.
pub(crate) fn expand_labels<T: Clone>(
    items: Vec<T>,
    labels: &[String],
    sys_of: impl Fn(&T) -> Sys,
    relabel: impl Fn(&T, &str) -> T,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for it in items {
        let s = sys_of(&it);
        match (&s.system, &s.label) {
            (System::Kstreams, None) if !labels.is_empty() => {
                out.extend(labels.iter().map(|l| relabel(&it, l)));
            }
            (System::Kstreams, Some(l)) if !labels.contains(l) => {
                return Err(format!(
                    "'{}': no --kstreams-bin-dir {l}=DIR given",
                    s.name()
                ));
            }
            _ => out.push(it),
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    WordCount,
    Orders,
}

/// A throughput case: `<system>-<wc|orders>[-<eos|alos>]`, where the system
/// may be `kstreams-LABEL` (see --kstreams-bin-dir).
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub system: System,
    pub label: Option<String>,
    pub app: App,
    pub eos: bool,
}

impl Case {
    pub fn parse(name: &str) -> Result<Case, String> {
        let bad = || format!("unknown case '{name}' (known: {})", ALL_CASES.join(", "));
        let (rest, eos) = if let Some(r) = name.strip_suffix("-eos") {
            (r, true)
        } else if let Some(r) = name.strip_suffix("-alos") {
            (r, false)
        } else {
            (name, true)
        };
        let (sys, app) = if let Some(s) = rest.strip_suffix("-wc") {
            (s, App::WordCount)
        } else if let Some(s) = rest.strip_suffix("-orders") {
            (s, App::Orders)
        } else {
            return Err(bad());
        };
        let Sys { system, label } = Sys::parse(sys).map_err(|_| bad())?;
        if (system == System::Ceiling && !eos) || (system == System::Quix && app == App::Orders) {
            return Err(bad());
        }
        Ok(Case {
            name: name.to_string(),
            system,
            label,
            app,
            eos,
        })
    }

    pub(crate) fn sys(&self) -> Sys {
        Sys {
            system: self.system,
            label: self.label.clone(),
        }
    }

    /// This (unlabelled kstreams) case run with the binaries labelled `label`.
    pub(crate) fn with_label(&self, label: &str) -> Case {
        let rest = self.name.strip_prefix("kstreams").unwrap_or(&self.name);
        Case {
            name: format!("kstreams-{label}{rest}"),
            label: Some(label.to_string()),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_case_parses() {
        for c in ALL_CASES {
            Case::parse(c).unwrap();
        }
        assert!(Case::parse("quix-orders-eos").is_err());
        assert!(Case::parse("ceiling-wc-alos").is_err());
    }

    #[test]
    fn labelled_kstreams_cases() {
        let c = Case::parse("kstreams-old-orders-eos").unwrap();
        assert_eq!(
            (c.system, c.label.as_deref(), c.app, c.eos),
            (System::Kstreams, Some("old"), App::Orders, true)
        );
        assert!(Case::parse("kstreams-wc-eos").unwrap().label.is_none());
        assert!(Case::parse("kafka-streams-wc-eos").unwrap().label.is_none());
        let labels = vec!["old".to_string(), "new".to_string()];
        let cases: Vec<Case> = ["ceiling-wc", "kstreams-wc-eos", "kafka-streams-wc-eos"]
            .iter()
            .map(|c| Case::parse(c).unwrap())
            .collect();
        let names: Vec<String> = expand_labels(cases, &labels, Case::sys, Case::with_label)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "ceiling-wc",
                "kstreams-old-wc-eos",
                "kstreams-new-wc-eos",
                "kafka-streams-wc-eos"
            ]
        );
        let bad = vec![Case::parse("kstreams-x-wc-eos").unwrap()];
        assert!(expand_labels(bad, &labels, Case::sys, Case::with_label).is_err());
        assert_eq!(Sys::parse("kstreams-new").unwrap().name(), "kstreams-new");
        let txn = Sys::parse("kafka-streams-txn").unwrap();
        assert_eq!(
            (txn.system, txn.name().as_str(), txn.settings()),
            (
                System::KafkaStreams,
                "kafka-streams-txn",
                &["enable.transactional.statestores=true"][..]
            )
        );
        assert!(Sys::parse("kafka-streams").unwrap().settings().is_empty());
        let c = Case::parse("kafka-streams-txn-wc-eos").unwrap();
        assert_eq!(
            (c.system, c.label.as_deref()),
            (System::KafkaStreams, Some("txn"))
        );
        assert!(Sys::parse("kstreams-").is_err());
    }
}
