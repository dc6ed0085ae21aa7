//! A heap summary as markdown: totals, per-unit lines and the top sites, their names shortened for a table.

use super::{AllocationSite, Frame, HeapSummary};

/// Longest function name shown in the markdown table before it is cut.
pub(super) const MAX_NAME: usize = 70;

impl HeapSummary {
    /// Totals (per task and per step when those are non-zero), then the
    /// `top` sites by bytes as a markdown table.
    pub fn markdown(&self, top: usize, tasks: u64, steps: u64) -> String {
        let mut lines = self.totals_lines();
        for (units, what) in [(tasks, "task"), (steps, "step")] {
            if units > 0 {
                let (bytes, blocks) = self.per_unit(units);
                lines.push(format!(
                    "- per {what} ({} {what}s): {bytes:.1} bytes in {blocks:.2} blocks",
                    thousands(units)
                ));
            }
        }
        lines.push(String::new());
        lines.extend(self.sites_table(top));
        lines.join("\n")
    }

    fn totals_lines(&self) -> Vec<String> {
        vec![
            format!(
                "- allocated: {} bytes in {} blocks over {:?}",
                thousands(self.total_bytes),
                thousands(self.total_blocks),
                self.duration
            ),
            format!(
                "- live at the global peak: {} bytes in {} blocks",
                thousands(self.peak_bytes),
                thousands(self.peak_blocks)
            ),
            format!("- live at the end: {} bytes", thousands(self.end_bytes)),
        ]
    }

    fn sites_table(&self, top: usize) -> Vec<String> {
        let mut lines = vec![
            "| rank | bytes | blocks | peak bytes | site |".to_string(),
            "|---:|---:|---:|---:|---|".to_string(),
        ];
        let share = |bytes: u64| 100.0 * bytes as f64 / self.total_bytes.max(1) as f64;
        for (rank, site) in self.sites.iter().take(top).enumerate() {
            lines.push(format!(
                "| {} | {} ({:.1}%) | {} | {} | {} |",
                rank + 1,
                thousands(site.bytes),
                share(site.bytes),
                thousands(site.blocks),
                thousands(site.peak_bytes),
                site.markdown_name()
            ));
        }
        let rest = &self.sites[top.min(self.sites.len())..];
        if !rest.is_empty() {
            let bytes: u64 = rest.iter().map(|s| s.bytes).sum();
            lines.push(String::new());
            lines.push(format!(
                "{} more sites: {} bytes ({:.1}%)",
                rest.len(),
                thousands(bytes),
                share(bytes)
            ));
        }
        lines
    }
}

impl Frame {
    /// The function without generic arguments, cut to a readable length.
    pub fn short_function(&self) -> String {
        shorten(&strip_generics(&self.function))
    }

    fn label(&self) -> String {
        match &self.location {
            Some(location) => format!("{} ({location})", self.short_function()),
            None => self.short_function(),
        }
    }
}

impl AllocationSite {
    /// The first frame, shortened, with its `file:line` when known, and
    /// the workspace's code that led to it when that is further down (a
    /// site in tokio's or sqlx's code says which of our calls it serves).
    pub fn name(&self) -> String {
        let Some(frame) = self.frames.first() else {
            return "(no stack)".to_string();
        };
        match self.workspace_caller() {
            Some(caller) => format!("{} ← {}", frame.label(), caller.label()),
            None => frame.label(),
        }
    }

    /// The name for a markdown table cell: the function as code, so its
    /// `<…>` is not taken for HTML, and pipes escaped.
    fn markdown_name(&self) -> String {
        let Some(frame) = self.frames.first() else {
            return "(no stack)".to_string();
        };
        let code = |frame: &Frame| {
            let function = format!("`{}`", frame.short_function().replace('`', "'"));
            match &frame.location {
                Some(location) => format!("{function} ({location})"),
                None => function,
            }
        };
        let cell = match self.workspace_caller() {
            Some(caller) => format!("{} ← {}", code(frame), code(caller)),
            None => code(frame),
        };
        cell.replace('|', "\\|")
    }
}

/// `alloc::vec::Vec<T,A>::push` → `alloc::vec::Vec::push`. A `<` right
/// after a name (or a turbofish `::<`) opens generic arguments; a leading
/// `<` opens a qualified path (`<Type as Trait>`) and stays.
pub(super) fn strip_generics(function: &str) -> String {
    let mut out = String::with_capacity(function.len());
    let mut depth = 0usize;
    for c in function.chars() {
        if depth > 0 {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            continue;
        }
        let after_name = out.ends_with(|p: char| p.is_alphanumeric() || p == '_' || p == ':');
        if c == '<' && after_name {
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            depth = 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps the innermost path segments that fit in [`MAX_NAME`]
/// characters: the function and its type say more than the crate.
pub(super) fn shorten(function: &str) -> String {
    if function.chars().count() <= MAX_NAME {
        return function.to_string();
    }
    // Cut only at `::` outside `<…>`, so a qualified path stays whole.
    let mut depth = 0usize;
    let mut cuts = Vec::new();
    for (i, c) in function.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && function[i..].starts_with("::") => cuts.push(i + 2),
            _ => {}
        }
    }
    let fits = |&&cut: &&usize| function[cut..].chars().count() < MAX_NAME;
    match cuts.iter().find(fits) {
        Some(&cut) => format!("…{}", &function[cut..]),
        None => function.chars().take(MAX_NAME - 1).chain(['…']).collect(),
    }
}

/// `1234567` → `1,234,567`: byte counts are read by eye.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
