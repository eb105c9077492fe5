//! Command-line flags with the syntax of Go's flag package, as Shopify's toxiproxy-server takes them:
//! `-host=0.0.0.0`, `-host 0.0.0.0`, `--host=...`; boolean flags take no separate value.

pub const USAGE: &str = "\
Usage of toxiproxy:
  -config string
        JSON file containing proxies to create on startup
  -host string
        Host for toxiproxy's API to listen on (default \"localhost\")
  -port string
        Port for toxiproxy's API to listen on (default \"8474\")
  -proxy-metrics
        enable toxiproxy-specific prometheus metrics (default \"false\")
  -runtime-metrics
        accepted for compatibility; Go runtime metrics do not exist here (default \"false\")
  -seed int
        Seed for randomizing toxics with
  -version
        print the version (default \"false\")
Environment: LOG_LEVEL=debug|info|warn|error (default info).";

#[derive(Debug, PartialEq)]
pub struct Options {
    pub host: String,
    pub port: String,
    pub config: Option<String>,
    pub seed: Option<i64>,
    pub proxy_metrics: bool,
    pub runtime_metrics: bool,
    pub print_version: bool,
    pub help: bool,
    /// Things accepted but ignored, to log once logging is set up.
    pub warnings: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: "8474".to_owned(),
            config: None,
            seed: None,
            proxy_metrics: false,
            runtime_metrics: false,
            print_version: false,
            help: false,
            warnings: Vec::new(),
        }
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {value:?} for -{name}")),
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty())
        else {
            // Go's flag package stops at the first argument that is not a flag.
            let rest: Vec<String> = std::iter::once(arg).chain(args.by_ref()).collect();
            options.warnings.push(format!("ignoring arguments {rest:?}"));
            break;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("flag needs an argument: -{name}"))
        };
        match name {
            "host" => options.host = value(name)?,
            "port" => options.port = value(name)?,
            "config" => options.config = Some(value(name)?),
            "seed" => {
                let seed = value(name)?;
                let parsed = seed.parse().map_err(|_| format!("invalid value {seed:?} for flag -seed"))?;
                options.seed = Some(parsed);
            }
            "proxy-metrics" | "runtime-metrics" | "version" | "h" | "help" => {
                let on = inline.as_deref().map_or(Ok(true), |v| parse_bool(name, v))?;
                match name {
                    "proxy-metrics" => options.proxy_metrics = on,
                    "runtime-metrics" => options.runtime_metrics = on,
                    "version" => options.print_version = on,
                    _ => options.help = on,
                }
            }
            _ => options.warnings.push(format!("ignoring unknown flag {arg:?}")),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn go_flag_forms() {
        let options =
            parse_args(&["-host=0.0.0.0", "--port", "9000", "-config", "c.json", "-proxy-metrics"]).unwrap();
        assert_eq!(options.host, "0.0.0.0");
        assert_eq!(options.port, "9000");
        assert_eq!(options.config.as_deref(), Some("c.json"));
        assert!(options.proxy_metrics && !options.runtime_metrics);
        assert_eq!(parse_args(&["--host", "::"]).unwrap().host, "::");
        assert_eq!(parse_args(&["-seed=42"]).unwrap().seed, Some(42));
        assert!(!parse_args(&["-runtime-metrics=false"]).unwrap().runtime_metrics);
    }

    #[test]
    fn defaults_errors_and_ignored_flags() {
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
        assert!(parse_args(&["-host"]).unwrap_err().contains("needs an argument"));
        assert!(parse_args(&["-seed=x"]).is_err());
        let options = parse_args(&["-made-up", "-host=h", "positional", "-port=1"]).unwrap();
        assert_eq!(options.host, "h");
        assert_eq!(options.port, "8474", "flags after a positional argument are not parsed (Go)");
        assert_eq!(options.warnings.len(), 2);
    }
}
