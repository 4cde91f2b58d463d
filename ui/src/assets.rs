//! The UI's one stylesheet, served at [`CSS_PATH`]. Plain CSS: readable on a laptop and a
//! phone (one column under 700 px), visible keyboard focus, colours with at least 4.5:1
//! contrast on their background for text.

/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/ui/assets/tessera.css";

/// The stylesheet.
pub const CSS: &str = r#"
:root { --ink:#1b1f24; --muted:#4f5862; --line:#d0d7de; --bg:#ffffff; --panel:#f6f8fa;
  --accent:#0b5cad; --bad:#a4262c; --warn:#8a4b00; --good:#1a6b2f; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:var(--bg); }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f0b400; outline-offset: 2px; }
.skip { position:absolute; left:-999px; } .skip:focus { left: 8px; top: 8px; background:#fff; padding:4px; }
header { background:#12263f; color:#fff; padding: 8px 16px; display:flex; flex-wrap:wrap; gap: 8px 24px; align-items:center; }
header .brand { font-weight:700; font-size:18px; color:#fff; text-decoration:none; }
header nav ul { list-style:none; display:flex; flex-wrap:wrap; gap: 4px 16px; margin:0; padding:0; }
header nav a { color:#dbe7f5; text-decoration:none; padding: 4px 2px; }
header nav a[aria-current="page"] { color:#fff; border-bottom: 3px solid #f0b400; }
header .who { margin-left:auto; font-size:14px; color:#dbe7f5; }
header .who button { margin-left: 8px; }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
h1 { font-size: 26px; margin: 8px 0 16px; }
h2 { font-size: 20px; margin: 24px 0 8px; }
.panel { background: var(--panel); border:1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
form.inline { display:flex; flex-wrap:wrap; gap: 8px 12px; align-items:flex-end; }
label { display:block; font-weight:600; font-size:14px; }
input, select { font: inherit; padding: 6px 8px; border:1px solid #8c959f; border-radius:4px; min-width: 12em; }
button { font: inherit; padding: 6px 14px; border-radius:4px; border:1px solid #0a4f95; background: var(--accent); color:#fff; cursor:pointer; }
button.secondary { background:#fff; color: var(--accent); }
table { border-collapse: collapse; width:100%; font-size: 15px; }
th, td { text-align:left; padding: 6px 8px; border-bottom:1px solid var(--line); vertical-align: top; }
th { background: var(--panel); }
.scroll { overflow-x:auto; }
.num { text-align:right; font-variant-numeric: tabular-nums; }
.bad { color: var(--bad); font-weight:600; } .warn { color: var(--warn); font-weight:600; } .good { color: var(--good); font-weight:600; }
.muted { color: var(--muted); }
.error { border-left: 6px solid var(--bad); }
.notice { border-left: 6px solid var(--warn); }
.figure { font-size: 32px; font-weight: 700; }
dl.facts { display:grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin:0; }
dl.facts dt { font-weight:600; color: var(--muted); } dl.facts dd { margin:0; }
svg { max-width:100%; height:auto; }
img.report { max-width:100%; height:auto; border:1px solid var(--line); background:#fff; }
code { background: var(--panel); padding: 0 4px; border-radius: 3px; word-break: break-all; }
@media (max-width: 700px) { header .who { margin-left:0; } main { padding: 8px; } .figure { font-size: 26px; } }
"#;
