//! Job names in the shell completions clap_complete writes: `guardian restart <TAB>`
//! offers the jobs of the configuration directory named on the line (`-c DIR`,
//! `--config DIR`, else /etc/guardian), read from its `jobs/*.toml` file names by the
//! shell itself: no process is started and the daemon is not asked, so a completion
//! takes a few milliseconds with hundreds of jobs, and works when the daemon is down.
//! After `-g` / `--group`, the group names are those of the `groups = [...]` lines of
//! the same files, read by the shell's own `read` (an array written over several lines
//! is not seen).

use clap_complete::Shell;

/// Commands whose first argument is a job or `all`.
const TARGETS: &str = "start stop restart monitor unmonitor";
/// Commands that take `-g GROUP`.
const GROUPS: &str = "start stop restart monitor unmonitor summary status";
/// Commands whose first argument is a job (`reload all` is refused, so not offered).
const JOBS: &str = "status reload logs env config run";

/// The completion script clap_complete wrote for `shell`, with job names added.
pub fn with_job_names(shell: Shell, script: &str) -> Result<String, String> {
    match shell {
        Shell::Bash => bash(script),
        Shell::Zsh => zsh(script),
        Shell::Fish => Ok(fish(script)),
        _ => Ok(script.to_string()),
    }
}

fn bash(script: &str) -> Result<String, String> {
    // clap's own registration is replaced by the wrapper's, with the same options.
    let Some(at) = script.find("if [[ \"${BASH_VERSINFO[0]}\" -eq 4 && ") else {
        return Err("the bash script has no `complete` block where it was expected".into());
    };
    let mut out = script[..at].to_string();
    out.push_str(&format!(
        r#"# Job names: the jobs/*.toml of the configuration directory named on the line.
_guardian_job_names() {{
    local dir=$1 f
    dir=${{dir/#\~/$HOME}}
    for f in "$dir"/jobs/*.toml; do
        [[ -e $f ]] || continue
        f=${{f##*/}}
        printf '%s\n' "${{f%.toml}}"
    done
}}

# Group names: the `groups = [...]` lines of the same files, read without a process.
_guardian_group_names() {{
    local dir=$1 f line rest
    local -A seen=()
    dir=${{dir/#\~/$HOME}}
    for f in "$dir"/jobs/*.toml; do
        [[ -e $f ]] || continue
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line =~ ^[[:space:]]*groups[[:space:]]*=[[:space:]]*\[(.*)$ ]] || continue
            rest=${{BASH_REMATCH[1]}}
            while [[ $rest =~ [\"\']([A-Za-z0-9._@-]+)[\"\'](.*)$ ]]; do
                seen[${{BASH_REMATCH[1]}}]=1
                rest=${{BASH_REMATCH[2]}}
            done
        done < "$f"
    done
    (( ${{#seen[@]}} )) && printf '%s\n' "${{!seen[@]}}"
}}

_guardian_with_jobs() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} dir=/etc/guardian sub= pos=0 i=1 w grp=
    while (( i < COMP_CWORD )); do
        w=${{COMP_WORDS[i]}}
        case $w in
            -c|--config|--socket|--timeout)
                (( i + 1 < COMP_CWORD )) || break
                (( i++ ))
                if [[ ${{COMP_WORDS[i]}} == = ]]; then (( i + 1 < COMP_CWORD )) || break; (( i++ )); fi
                [[ $w == -c || $w == --config ]] && dir=${{COMP_WORDS[i]}}
                ;;
            -n|--lines) [[ $sub == logs ]] && (( i++ )) ;;
            -g|--group)
                grp=1
                (( i + 1 < COMP_CWORD )) || break
                (( i++ ))
                if [[ ${{COMP_WORDS[i]}} == = ]]; then (( i + 1 < COMP_CWORD )) || break; (( i++ )); fi
                ;;
            -*) ;;
            *) if [[ -z $sub ]]; then sub=$w; else (( pos++ )); fi ;;
        esac
        (( i++ ))
    done
    local prev=${{COMP_WORDS[COMP_CWORD-1]}}
    [[ $prev == = ]] && (( COMP_CWORD > 1 )) && prev=${{COMP_WORDS[COMP_CWORD-2]}}
    if [[ $prev == -g || $prev == --group ]] && [[ -n $sub ]]; then
        case " {GROUPS} " in *" $sub "*)
            [[ $cur == = ]] && cur=
            COMPREPLY=( $(compgen -W "$(_guardian_group_names "$dir")" -- "$cur") )
            return 0 ;;
        esac
    fi
    # A group in place of the job: no job after `-g GROUP`.
    if (( i == COMP_CWORD )) && (( pos == 0 )) && [[ -z $grp && -n $sub && $cur != -* ]]; then
        local names
        case " {TARGETS} " in *" $sub "*)
            names="all $(_guardian_job_names "$dir")"
            COMPREPLY=( $(compgen -W "$names" -- "$cur") )
            return 0 ;;
        esac
        case " {JOBS} " in *" $sub "*)
            names=$(_guardian_job_names "$dir")
            COMPREPLY=( $(compgen -W "$names" -- "$cur") )
            return 0 ;;
        esac
    fi
    _guardian "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _guardian_with_jobs -o nosort -o bashdefault -o default guardian
else
    complete -F _guardian_with_jobs -o bashdefault -o default guardian
fi
"#
    ));
    Ok(out)
}

fn zsh(script: &str) -> Result<String, String> {
    // The commands whose target may be `all` get the targets; `reload`, the jobs.
    let mut replaced = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find("\n(") {
        let (before, section) = rest.split_at(at + 1);
        replaced.push_str(before);
        let end = section[1..].find("\n(").map_or(section.len(), |e| e + 1);
        let (this, next) = section.split_at(end);
        let sub = this[1..].split(')').next().unwrap_or("");
        let all = TARGETS.split(' ').any(|t| t == sub);
        replaced.push_str(&if all {
            this.replace("'::target:_default'", "'::target:_guardian_targets'")
        } else {
            this.to_string()
        });
        rest = next;
    }
    replaced.push_str(rest);
    let replaced = replaced
        .replace("'::target:_default'", "'::target:_guardian_jobs'")
        .replace("':target:_default'", "':target:_guardian_targets'")
        .replace(":job:_default'", ":job:_guardian_jobs'")
        .replace(":GROUP:_default'", ":GROUP:_guardian_groups'");
    let tail = "if [ \"$funcstack[1]\" = \"_guardian\" ]; then";
    let Some(at) = replaced.find(tail) else {
        return Err("the zsh script has no registration where it was expected".into());
    };
    if !replaced.contains("_guardian_targets'") || !replaced.contains(":job:_guardian_jobs'") {
        return Err("the zsh script has no job arguments where they were expected".into());
    }
    let mut out = replaced[..at].to_string();
    out.push_str(
        r#"# Job names: the jobs/*.toml of the configuration directory named on the line.
(( $+functions[_guardian_job_names] )) ||
_guardian_job_names() {
    local dir=/etc/guardian i
    local -a line
    line=( ${(z)BUFFER} )
    for (( i = 1; i < ${#line}; i++ )); do
        case ${line[i]} in
            -c|--config) dir=${line[i+1]} ;;
            --config=*) dir=${line[i]#--config=} ;;
        esac
    done
    dir=${~dir}
    reply=( $dir/jobs/*.toml(N:t:r) )
}
(( $+functions[_guardian_jobs] )) ||
_guardian_jobs() {
    local -a reply
    _guardian_job_names
    _describe -t jobs 'job' reply
}
(( $+functions[_guardian_group_names] )) ||
_guardian_group_names() {
    setopt localoptions extendedglob
    local dir=/etc/guardian i f line rest
    local -a line_words
    local -aU groups
    line_words=( ${(z)BUFFER} )
    for (( i = 1; i < ${#line_words}; i++ )); do
        case ${line_words[i]} in
            -c|--config) dir=${line_words[i+1]} ;;
            --config=*) dir=${line_words[i]#--config=} ;;
        esac
    done
    dir=${~dir}
    for f in $dir/jobs/*.toml(N); do
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line == [[:space:]]#groups[[:space:]]#=[[:space:]]#\[* ]] || continue
            rest=${line#*\[}
            while [[ $rest == *[\"\'][A-Za-z0-9._@-]##[\"\']* ]]; do
                rest=${rest#*[\"\']}
                groups+=( ${rest%%[\"\']*} )
                rest=${rest#*[\"\']}
            done
        done < $f
    done
    reply=( $groups )
}
(( $+functions[_guardian_groups] )) ||
_guardian_groups() {
    local -a reply
    _guardian_group_names
    _describe -t groups 'group' reply
}
(( $+functions[_guardian_targets] )) ||
_guardian_targets() {
    local -a reply
    _guardian_job_names
    reply+=( all )
    _describe -t jobs 'job or all' reply
}

"#,
    );
    out.push_str(&replaced[at..]);
    Ok(out)
}

fn fish(script: &str) -> String {
    let mut out = script.to_string();
    out.push_str(&format!(
        r#"
# The configuration directory named on the line (-c DIR, --config=DIR), or the default.
function __guardian_dir
    set -l tokens (commandline -opc)
    set -l dir /etc/guardian
    set -l take 0
    for t in $tokens
        if test $take = 1
            set dir $t
            set take 0
            continue
        end
        switch $t
            case -c --config
                set take 1
            case '--config=*'
                set dir (string replace -- '--config=' '' $t)
        end
    end
    echo $dir
end

# Job names: the jobs/*.toml of the configuration directory named on the line.
function __guardian_job_names
    set -l dir (__guardian_dir)
    set -l files $dir/jobs/*.toml
    test (count $files) -gt 0; or return
    string replace -r '^.*/(.*)\.toml$' '$1' -- $files
end

# Group names: the `groups = [...]` lines of the same files.
function __guardian_group_names
    set -l dir (__guardian_dir)
    set -l names
    for f in $dir/jobs/*.toml
        while read -l line
            set -l inside (string match -rg '^\s*groups\s*=\s*\[(.*)$' -- $line); or continue
            for n in (string match -rag '["\']([A-Za-z0-9._@-]+)["\']' -- $inside)
                contains -- $n $names; or set -a names $n
            end
        end < $f
    end
    printf '%s\n' $names
end

# True when the word being completed is the first argument of one of the commands given.
function __guardian_wants_job
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l sub ''
    set -l n 0
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        switch $t
            case -c --config --socket --timeout -n --lines -g --group
                set skip 1
            case '-*'
            case '*'
                if test -z "$sub"
                    set sub $t
                else
                    set n (math $n + 1)
                end
        end
    end
    test $n -eq 0; and contains -- "$sub" $argv
end

complete -c guardian -n '__guardian_wants_job {TARGETS}' -f -a 'all (__guardian_job_names)'
complete -c guardian -n '__guardian_wants_job {JOBS}' -f -a '(__guardian_job_names)'
for sub in {GROUPS}
    complete -c guardian -n "__fish_guardian_using_subcommand $sub" -s g -l group -x -a '(__guardian_group_names)'
end
"#
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn generated(shell: Shell) -> String {
        let mut buf = Vec::new();
        clap_complete::generate(
            shell,
            &mut super::super::Args::command(),
            "guardian",
            &mut buf,
        );
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn every_shell_gets_job_names() {
        let bash = with_job_names(Shell::Bash, &generated(Shell::Bash)).unwrap_or_default();
        assert!(bash.contains("complete -F _guardian_with_jobs"), "{bash}");
        assert!(!bash.contains("complete -F _guardian -o"), "{bash}");
        let zsh = with_job_names(Shell::Zsh, &generated(Shell::Zsh)).unwrap_or_default();
        // start's target may be `all`; reload's may not.
        assert!(zsh.contains("'::target:_guardian_targets'"), "{zsh}");
        assert!(zsh.contains("'::target:_guardian_jobs'"), "{zsh}");
        assert!(zsh.contains(":GROUP:_guardian_groups'"), "{zsh}");
        assert!(!zsh.contains(":GROUP:_default"), "{zsh}");
        assert!(zsh.contains("'::job:_guardian_jobs'"), "{zsh}");
        assert!(!zsh.contains(":target:_default"), "{zsh}");
        assert!(zsh.find("_guardian_targets() {") < zsh.find("if [ \"$funcstack[1]\""));
        let fish = with_job_names(Shell::Fish, &generated(Shell::Fish));
        assert!(fish.is_ok_and(|f| {
            f.contains("__guardian_wants_job start stop restart")
                && f.contains("-s g -l group -x -a '(__guardian_group_names)'")
        }));
        assert!(bash.contains("_guardian_group_names \"$dir\""), "{bash}");
    }

    #[test]
    fn a_script_not_as_expected_is_an_error() {
        assert!(with_job_names(Shell::Bash, "nothing").is_err());
        assert!(with_job_names(Shell::Zsh, "nothing").is_err());
    }
}
