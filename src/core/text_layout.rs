//! Plain-text layout shared by the e-mail's text part and the chat message: what a template
//! leaves around its blocks is tidied the same way.

/// At most one blank line in a row, no trailing spaces, no leading blank lines, and a newline
/// after every line.
pub fn tidy_blank_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_start_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_blank_line_at_most() {
        assert_eq!(super::tidy_blank_lines("\n\na  \n\n\n\nb\n"), "a\n\nb\n");
    }
}
