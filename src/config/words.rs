//! Splitting an `exec` line into words the way a POSIX shell would, without running one:
//! whitespace separates words, single quotes keep everything, double quotes keep everything
//! but `\"`, `\\`, `\$` and `` \` ``, and a backslash outside quotes escapes the next character.

pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("a backslash ends the line".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    // The words live as long as the job: no room to spare in them (a Vec of two words
    // grown to four, words grown a character at a time to eight bytes or more).
    for w in &mut words {
        w.shrink_to_fit();
    }
    words.shrink_to_fit();
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split(r#"/bin/echo  'a b' "c \"d\"" e\ f"#),
            Ok(vec![
                "/bin/echo".to_string(),
                "a b".into(),
                "c \"d\"".into(),
                "e f".into()
            ])
        );
        assert_eq!(split("''"), Ok(vec![String::new()]));
        assert!(split("echo 'oops").is_err());
    }
}
