//! The content filter (`WHISPER_CONTENT_FILTER`): a file of deny rules, one
//! regular expression a line (blank lines and lines starting with `#` are
//! ignored; `(?i)` makes a rule case-insensitive). A plain-text message that
//! matches any rule is refused with `blocked` before it reaches the bus.
//! Encrypted text (`enc`) is never inspected: the gateway cannot read it.
//!
//! The file is read at start (a bad file stops the gateway) and again
//! whenever it changes; a bad edit keeps the rules in force and is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use regex::RegexSet;
use tokio_util::sync::CancellationToken;

/// How often the file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A set of deny rules.
#[derive(Debug, Clone)]
pub struct Rules(RegexSet);

impl Rules {
    /// Reads and compiles the rules of a file; the error names the line.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        for (number, line) in &lines {
            regex::Regex::new(line).map_err(|e| format!("line {number} is not a regular expression: {e}"))?;
        }
        RegexSet::new(lines.iter().map(|(_, l)| l))
            .map(Self)
            .map_err(|e| format!("rules do not compile together: {e}"))
    }

    /// Whether `text` matches a rule.
    pub fn blocks(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// Rules in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no rule.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What tells that a file changed: its modification time and size.
type Stamp = Option<(Option<SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()))
}

/// The rules in force, reloaded when their file changes.
#[derive(Debug)]
pub struct ContentFilter {
    path: PathBuf,
    rules: RwLock<Arc<Rules>>,
    /// The file as it was when the rules were read at start.
    loaded: Stamp,
}

impl ContentFilter {
    /// Reads the file (checked at configuration time already).
    pub fn load(path: &Path) -> Result<Self, String> {
        let loaded = stamp(path);
        Ok(Self {
            path: path.to_owned(),
            rules: RwLock::new(Arc::new(Rules::read(path)?)),
            loaded,
        })
    }

    /// Whether the rules in force refuse `text`.
    pub fn blocks(&self, text: &str) -> bool {
        let rules = self.rules.read().expect("filter lock").clone();
        rules.blocks(text)
    }

    /// Reloads the rules whenever the file's modification time or size
    /// changes, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut seen = self.loaded;
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            match Rules::read(&self.path) {
                Ok(rules) => {
                    tracing::info!(rules = rules.len(), "content filter reloaded");
                    *self.rules.write().expect("filter lock") = Arc::new(rules);
                }
                Err(e) => tracing::warn!(error = %e, "content filter not reloaded; the previous rules stay"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_line_and_skip_comments() {
        let rules = Rules::parse("# spam\n\n(?i)buy now\n\\bcasino\\b\n").unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules.blocks("BUY NOW, cheap"));
        assert!(rules.blocks("the casino is open"));
        assert!(!rules.blocks("casinos"));
        assert!(!rules.blocks("hello"));
        assert!(!Rules::parse("").unwrap().blocks("anything"));
    }

    #[test]
    fn a_bad_rule_names_its_line() {
        let err = Rules::parse("fine\n# comment\n(unclosed\n").unwrap_err();
        assert!(err.starts_with("line 3 "), "{err}");
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_a_bad_edit_keeps_the_rules() {
        let dir = std::env::temp_dir().join(format!("whisper-filter-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.txt");
        std::fs::write(&path, "alpha\n").unwrap();
        let filter = Arc::new(ContentFilter::load(&path).unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(filter.clone().watch(stop.clone()));
        assert!(filter.blocks("alpha") && !filter.blocks("beta"));
        std::fs::write(&path, "alpha\nbeta-rule\n").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !filter.blocks("beta-rule") {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::write(&path, "(broken\n").unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(filter.blocks("alpha"), "a bad edit keeps the rules in force");
        stop.cancel();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
