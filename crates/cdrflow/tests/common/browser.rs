//! Pages as a real headless Chromium renders them: the DOM after the
//! page's scripts ran, and the cells of its tables.

use std::process::{Command, Stdio};

use super::temp_dir;

/// The DOM of `url` after `virtual_ms` of the page's own (virtual) time:
/// long enough for a polling page to refresh a few times.
pub fn rendered_dom(url: &str, virtual_ms: u32) -> String {
    let profile = temp_dir("chromium-profile");
    let page = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium is installed (.ci/run: apt-get install chromium)");
    String::from_utf8_lossy(&page.stdout).into_owned()
}

/// The cells of each body row of the table with `id`, thousands
/// separators and empty cells dropped.
pub fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} is on the page:\n{dom}"));
    let table = &dom[start..];
    let body = &table[table.find("<tbody>").unwrap() + 7..table.find("</tbody>").unwrap()];
    body.split("<tr>")
        .filter(|row| !row.is_empty())
        .map(|row| {
            row.split("</td>")
                .filter_map(|cell| cell.rfind('>').map(|at| cell[at + 1..].replace(',', "")))
                .filter(|cell| !cell.starts_with('/'))
                .collect::<Vec<_>>()
        })
        .map(|mut cells| {
            cells.retain(|c| !c.is_empty());
            cells
        })
        .collect()
}

/// The text of the element with `id` (up to its first child), thousands
/// separators dropped.
pub fn element_text(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} is on the page:\n{dom}"));
    let text = &dom[start..];
    let text = &text[text.find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()].replace(',', "")
}

/// The first `name="..."` attribute on the page, as a number (the
/// dashboard's scripts note what they drew in `data-*` attributes).
pub fn data_attribute(dom: &str, name: &str) -> u64 {
    let start = dom
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("{name} is set:\n{dom}"));
    let value = &dom[start + name.len() + 2..];
    value[..value.find('"').unwrap()].parse().unwrap()
}
