//! Every state the database keeps as a word (or, for merge actions, a small integer): one enum
//! each, stored as exactly the text earlier versions wrote, so existing stores read unchanged.
//! The text lives only in the impls the [`stored_text!`] macro writes; code matches on variants.

use std::fmt;

/// A stored word that no variant has (a corrupt row, or a store written by a newer version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` in the store")]
pub struct UnknownValue {
    /// The enum that was being read.
    pub kind: &'static str,
    pub value: String,
}

/// An enum stored as text: `as_str` and `FromStr` are the one mapping (exhaustive both ways),
/// `Display` pads like a string, serde uses the same text.
macro_rules! stored_text {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    other => Err(UnknownValue {
                        kind: stringify!($name),
                        value: other.to_string(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

stored_text! {
    /// Where a run stands (`runs.status`).
    pub enum RunStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Completed, but some entities failed or are still pending.
        Partial = "partial",
        Failed = "failed",
        /// Its process stopped renewing the run's lease (killed, crashed, lost) before it ended:
        /// found and marked by the next process that opened the store.
        Abandoned = "abandoned",
    }
}

stored_text! {
    /// How a run is worked (`runs.mode`).
    pub enum RunMode {
        /// By the process that created it.
        Local = "local",
        /// From the task queue, by whichever workers attach to it.
        Distributed = "distributed",
    }
}

stored_text! {
    /// The outcome of one generation (`generations.status`, `entity_state.last_status`).
    pub enum GenerationStatus {
        Ok = "ok",
        /// The writer answered but validation rejected the output.
        Invalid = "invalid",
        /// No usable answer (provider errors).
        Failed = "failed",
    }
}

stored_text! {
    /// A distributed run's task (`tasks.state`).
    pub enum TaskState {
        Pending = "pending",
        /// Claimed by a worker, under a lease.
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

stored_text! {
    /// A Batch API submission (`batches.status`).
    pub enum BatchStatus {
        /// Recorded before the provider was asked to create it.
        Submitting = "submitting",
        /// The provider has it (its batch id is stored).
        Submitted = "submitted",
        /// Its answers are stored.
        Collected = "collected",
        Failed = "failed",
    }
}

impl BatchStatus {
    /// A batch in this state is finished with: it gets its `collected_at` time.
    pub fn is_final(self) -> bool {
        match self {
            BatchStatus::Collected | BatchStatus::Failed => true,
            BatchStatus::Submitting | BatchStatus::Submitted => false,
        }
    }
}

stored_text! {
    /// A delivered file's ingest (`ingested_files.status`).
    pub enum FileStatus {
        /// Being loaded; left so by a process that stopped, it is ingested again.
        Loading = "loading",
        Done = "done",
        Failed = "failed",
    }
}

stored_text! {
    /// The outcome of one attempt at an entity, as written into its generation's attempt log.
    pub enum AttemptOutcome {
        Ok = "ok",
        /// The answer failed validation (a repair attempt may follow).
        Invalid = "invalid",
        RateLimited = "rate_limited",
        Transient = "transient",
        InvalidRequest = "invalid_request",
        /// The prompt exceeds the model's context window (retried once with a trimmed prompt).
        ContextTooLong = "context_too_long",
        /// The answer hit the output budget.
        Truncated = "truncated",
        Fatal = "fatal",
        /// The Batch API answered the request with an error.
        BatchError = "batch_error",
        /// The Batch API's output has no answer for the request.
        BatchMissing = "batch_missing",
    }
}

/// How the SCD2 merge plan classifies one key of a delivery (`action` of the plan table:
/// integers, compared in SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeAction {
    /// No current version: a new key.
    New,
    /// Older than the current version (an out-of-order delivery): kept in bronze only.
    Stale,
    /// Same row hash as the current version, not deleted: writes nothing.
    Unchanged,
    /// The current version is closed and a new one inserted.
    Changed,
}

impl MergeAction {
    pub const ALL: &'static [MergeAction] = &[
        MergeAction::New,
        MergeAction::Stale,
        MergeAction::Unchanged,
        MergeAction::Changed,
    ];

    /// The integer in the plan table.
    pub fn code(self) -> i64 {
        match self {
            MergeAction::New => 0,
            MergeAction::Stale => 1,
            MergeAction::Unchanged => 2,
            MergeAction::Changed => 3,
        }
    }

    pub fn from_code(code: i64) -> Result<MergeAction, UnknownValue> {
        MergeAction::ALL
            .iter()
            .copied()
            .find(|a| a.code() == code)
            .ok_or_else(|| UnknownValue {
                kind: "MergeAction",
                value: code.to_string(),
            })
    }
}

/// Reads a stored word as `T`, failing the row (a decode error naming the value) when no
/// variant has it.
pub fn decode<T: std::str::FromStr<Err = UnknownValue>>(text: &str) -> Result<T, sqlx::Error> {
    text.parse()
        .map_err(|e: UnknownValue| sqlx::Error::Decode(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy
            + PartialEq
            + fmt::Debug
            + std::str::FromStr<Err = UnknownValue>
            + fmt::Display
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        for v in all {
            assert_eq!(v.to_string().parse::<T>().unwrap(), *v);
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{v}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
        }
    }

    #[test]
    fn every_value_reads_back_and_unknown_words_are_errors() {
        round_trips(RunStatus::ALL);
        round_trips(RunMode::ALL);
        round_trips(GenerationStatus::ALL);
        round_trips(TaskState::ALL);
        round_trips(BatchStatus::ALL);
        round_trips(FileStatus::ALL);
        round_trips(AttemptOutcome::ALL);
        for a in MergeAction::ALL {
            assert_eq!(MergeAction::from_code(a.code()).unwrap(), *a);
        }
        assert!(MergeAction::from_code(4).is_err());
        let e = "finished".parse::<RunStatus>().unwrap_err();
        assert_eq!(e.to_string(), "unknown RunStatus `finished` in the store");
        assert!(decode::<TaskState>("done").is_ok());
        assert!(decode::<TaskState>("gone").is_err());
    }

    /// The texts are what the stores of earlier versions hold: changing one breaks every store.
    #[test]
    fn the_stored_texts_are_those_of_earlier_versions() {
        let texts = |all: &[&'static str]| all.join(",");
        assert_eq!(
            texts(
                &RunStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "running,succeeded,partial,failed,abandoned"
        );
        assert_eq!(
            texts(
                &TaskState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "pending,running,done,failed"
        );
        assert_eq!(
            texts(
                &BatchStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "submitting,submitted,collected,failed"
        );
        assert_eq!(
            texts(
                &FileStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "loading,done,failed"
        );
        assert_eq!(
            texts(
                &GenerationStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "ok,invalid,failed"
        );
        assert_eq!(
            serde_json::to_string(&[AttemptOutcome::ContextTooLong, AttemptOutcome::Ok]).unwrap(),
            r#"["context_too_long","ok"]"#
        );
        let parsed: GenerationStatus = serde_json::from_str(r#""invalid""#).unwrap();
        assert_eq!(parsed, GenerationStatus::Invalid);
    }
}
