//! `snap metrics` and `snap report` on a plan with real runs: the textfile metrics parse and say
//! what the run log says; the report's JSON holds every run; the HTML page is self-contained and
//! renders in headless Chromium without script errors, its charts drawing one point per backup
//! (and a page without data reports the failure, so the check can fail).

use std::collections::BTreeMap;

use crate::common::{code, make_files};
use crate::plan_common::{PlanDir, chromium_screenshot, chromium_status, read};

fn plan_with_runs() -> PlanDir {
    let p = PlanDir::new();
    let src = p.dir.join("src");
    p.write(&format!(
        "version: 1\n{}jobs:\n  app:\n    class: important\n    repository: local\n    copy_to: [offsite]\n    paths: [{}]\n    schedule:\n      full: \"0 2 * * 0\"\n      incremental: \"0 2 * * *\"\n  idle:\n    class: normal\n    repository: offsite\n    paths: [{}]\n    schedule:\n      full: \"0 3 1 * *\"\n",
        p.repositories(),
        src.display(),
        src.display()
    ));
    for (i, day) in ["2025-03-01", "2025-03-02", "2025-03-03"]
        .iter()
        .enumerate()
    {
        make_files(&src, 0..(3 + 2 * i as u64), 20_000);
        let at = format!("{day}T02:00:00+00:00");
        let o = p.run(&["run", "--now", "--at", &at, "app"]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    p
}

/// `name{labels} value` lines by name and labels.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut declared = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            declared.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let (series, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {l:?}"));
        let name = &series[..series.find('{').unwrap_or(series.len())];
        assert!(declared.iter().any(|d| d == name), "{name} has no # TYPE");
        assert!(series.ends_with('}'), "{l}");
        m.insert(
            series.to_string(),
            value.parse::<f64>().unwrap_or_else(|_| panic!("{l}")),
        );
    }
    m
}

#[test]
fn metrics_textfile_says_what_the_log_says() {
    let p = plan_with_runs();
    let dir = p.dir.join("textfile");
    let o = p.run(&["metrics", "--textfile", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["snap.prom"], "no temporary file left behind");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("snap.prom"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let m = parse_metrics(&read(&dir.join("snap.prom")));
    let app = "job=\"app\",class=\"important\"";
    let runs = p.runs();
    let last = runs.last().unwrap();
    assert_eq!(m[&format!("snap_job_last_run_success{{{app}}}")], 1.0);
    assert_eq!(
        m[&format!("snap_job_runs_total{{{app},result=\"success\"}}")],
        3.0
    );
    assert_eq!(
        m[&format!("snap_job_last_run_result{{{app},result=\"success\"}}")],
        1.0
    );
    let start = chrono::DateTime::parse_from_rfc3339(last["start"].as_str().unwrap()).unwrap();
    assert_eq!(
        m[&format!("snap_job_last_run_timestamp_seconds{{{app}}}")],
        start.timestamp() as f64
    );
    assert_eq!(
        m[&format!("snap_job_last_run_bytes_added{{{app}}}")],
        last["bytes_added"].as_f64().unwrap()
    );
    // the newest backup ended in March 2025 (simulated clock): a recovery point well over a year old
    let rpo = m[&format!("snap_job_recovery_point_age_seconds{{{app}}}")];
    assert!(rpo > 86_400.0 * 365.0, "{rpo}");
    // a job that never ran has no last-run series
    assert!(
        !m.keys()
            .any(|k| k.contains("job=\"idle\"") && k.contains("last_run")),
        "{m:?}"
    );
    for repo in ["local", "offsite"] {
        let size = m[&format!("snap_repository_size_bytes{{repository=\"{repo}\"}}")];
        assert!(size > 100_000.0, "{repo}: {size}");
    }
}

#[test]
fn report_renders_in_chromium_with_data() {
    let p = plan_with_runs();
    let page = p.dir.join("report.html");
    let o = p.run(&["--json", "report", "--html", page.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["jobs"][0]["job"], "app");
    assert_eq!(j["jobs"][0]["series"].as_array().unwrap().len(), 3);
    assert_eq!(j["jobs"][0]["copies"], 2);
    assert_eq!(
        j["jobs"][0]["rule_321"], false,
        "both repositories are local directories"
    );
    assert!(
        j["repositories"][0]["stats"]["repository_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let html = read(&page);
    // self-contained: nothing is fetched
    for needle in ["<link", "src=\"http", "src='http", "@import", "url(http"] {
        assert!(!html.contains(needle), "{needle}");
    }
    // three charts of three backups each
    assert_eq!(chromium_status(&page), "ok points=9");
    chromium_screenshot(&page, &p.dir.join("report-small.png"), 900);
    // the check can fail: a page whose data is missing says so
    let broken = p.dir.join("broken.html");
    let i = html.find("const DATA = ").unwrap();
    let end = i + html[i..].find('\n').unwrap();
    std::fs::write(
        &broken,
        format!("{}const DATA = null;{}", &html[..i], &html[end..]),
    )
    .unwrap();
    let status = chromium_status(&broken);
    assert!(
        status.starts_with("error: ") && status.contains("no report data"),
        "{status}"
    );
}
