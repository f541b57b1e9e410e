"""The Jinja2 template of the demo report (HTML and CSS kept as written, long lines and all)."""

# ruff: noqa: E501

TEMPLATE = r"""{% macro case(c) -%}
<div class="case {{ 'good' if c.good }}">
 <div class="tile q"><img src="{{ c.query }}" alt="query"><div class="l" title="{{ c.title }}">{{ c.label }}</div><div class="dist">query</div></div>
 <div class="arrow">→</div>
 {% for n in c.neighbours %}<div class="tile {{ 'ok' if n.correct else 'bad' }}">{% if n.src %}<img src="{{ n.src }}" alt="{{ n.label }}">{% endif %}<div class="l">{{ n.label }}</div><div class="dist">{{ n.distance }}</div></div>{% endfor %}
 <div class="verdict"><span class="badge {{ 'good' if c.good }}">{{ c.outcome }}</span><br>{{ c.decision }}{% if c.matched %}: {{ c.matched }}{% endif %}<br><span class="dist">score {{ c.score }} / threshold {{ c.threshold }}</span>{% if c.title %}<br><span class="dist">{{ c.title }}</span>{% endif %}</div>
</div>
{%- endmacro %}
<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ d.title }}</title>
<style>
 body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
 main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
 h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:34px 0 10px;border-bottom:2px solid #dfe4ec;padding-bottom:4px}
 .sub{color:#5a6477;margin:0 0 18px}
 .cards{display:flex;gap:14px;flex-wrap:wrap;margin:14px 0}
 .card{background:#fff;border-radius:10px;padding:14px 18px;box-shadow:0 1px 3px #0001;flex:1 1 0;min-width:150px}
 .card .v{font-size:28px;font-weight:650} .card .n{color:#5a6477;font-size:13px}
 .card .v small{font-size:15px;color:#5a6477;font-weight:400}
 table{border-collapse:collapse;background:#fff;border-radius:8px;overflow:hidden;box-shadow:0 1px 3px #0001}
 th,td{padding:5px 12px;text-align:left;border-bottom:1px solid #eef1f5;font-variant-numeric:tabular-nums}
 th{background:#eef2f8;font-weight:600} td.num{text-align:right}
 tr.first td{border-top:2px solid #dfe4ec} tr.headline td{font-weight:650;background:#fffbe6}
 .up{color:#1e7e34} .down{color:#b02a37}
 .two{display:grid;grid-template-columns:1fr 1fr;gap:18px} @media(max-width:800px){.two{grid-template-columns:1fr}}
 .help{color:#5a6477;font-size:13.5px;margin:6px 0 10px} .help b{color:#1d2330}
 img.fig{max-width:100%;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0001}
 pre{background:#fff;padding:10px 14px;border-radius:8px;font-size:12.5px;overflow:auto;box-shadow:0 1px 3px #0001;max-height:360px}
 .case{display:flex;align-items:flex-start;gap:6px;background:#fff;border-radius:8px;padding:8px 10px;margin:0 0 8px;box-shadow:0 1px 3px #0001;border-left:5px solid #b02a37}
 .case.good{border-left-color:#1e7e34}
 .tile{text-align:center;font-size:11.5px;width:86px}
 .tile img{width:64px;height:64px;image-rendering:pixelated;border:3px solid #d5dae3;border-radius:4px;background:#fff}
 .tile.q img{border-color:#3b6ea8} .tile.ok img{border-color:#1e7e34} .tile.bad img{border-color:#e3b5ba}
 .tile .l{font-family:ui-monospace,monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
 .tile .dist{color:#5a6477}
 .verdict{width:180px;font-size:13px;padding:4px 8px 0 2px}
 .badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12.5px;color:#fff;background:#b02a37}
 .badge.good{background:#1e7e34}
 .arrow{align-self:center;color:#8a93a5;font-size:20px;padding:0 4px}
 code{background:#eef2f8;padding:1px 5px;border-radius:4px;font-size:13px}
 .cmd td:last-child{font-family:ui-monospace,monospace;font-size:13px}
</style></head><body><main>
<h1>{{ d.title }}</h1>
<p class="sub">{{ d.dataset }}</p>

<div class="cards">
 <div class="card"><div class="n">test hit_rate@1, untrained</div><div class="v">{{ metric_rows|selectattr("headline")|map(attribute="before")|first|default("–") }}</div></div>
 <div class="card"><div class="n">test hit_rate@1, trained</div><div class="v">{{ metric_rows|selectattr("headline")|map(attribute="after")|first|default("–") }}</div></div>
 {% for name, value in d.open_set[:2] %}<div class="card"><div class="n">{{ name }}</div><div class="v">{{ value }}</div></div>{% endfor %}
 <div class="card"><div class="n">wall time, all stages</div><div class="v">{{ total }}</div></div>
</div>

<h2>Data and split</h2>
<div class="two"><div>
<table>{% for name, value in d.facts %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</div><div>
<table><tr><th>split</th><th>classes</th><th>queries</th><th>gallery / train images</th></tr>
{% for r in d.split_rows %}<tr><td>{{ r.split }}</td><td class="num">{{ r.classes }}</td><td class="num">{{ r.queries }}</td><td class="num">{{ r.images }}</td></tr>{% endfor %}
</table>
<p class="help">Class-disjoint: every character is wholly in train, val or test, so the test figures are on characters the model never saw.</p>
</div></div>

<h2>Retrieval on the test split, before and after training</h2>
<p class="help"><b>hit_rate@k</b>: {{ help.hit_rate }}<br>
<b>recall@k</b>: {{ help.recall }}<br>
<b>precision@k</b>: {{ help.precision }} <b>map@k</b>: {{ help.map }} <b>map@r</b>: MAP@R, average precision over the first R results, R = the class's gallery size.</p>
<table><tr><th>metric</th><th>untrained</th><th>trained</th><th>change</th></tr>
{% for r in metric_rows %}<tr class="{{ 'first' if r.first }} {{ 'headline' if r.headline }}"><td>{{ r.key }}</td><td class="num">{{ r.before }}</td><td class="num">{{ r.after }}</td><td class="num {{ 'up' if r.up }}{{ 'down' if r.down }}">{{ r.delta }}</td></tr>
{% endfor %}</table>

{% if training %}<h2>Training</h2><img class="fig" src="{{ training }}" alt="training curves">{% endif %}

<h2>The match decision: known and unknown objects</h2>
<p class="help">A <b>mated</b> search has its object in the gallery, a <b>non-mated</b> one does not. <b>FPIR</b>: non-mated searches answered “match”; <b>FNIR</b>: mated searches not answered “match” with the right object; the <b>wrong-match rate</b> (part of FNIR) counts those matched with another object.</p>
{% if d.outcomes %}<table><tr><th>test searches</th><th>right match</th><th>wrong match</th><th>no match</th></tr>
{% for o in d.outcomes %}<tr><td>{{ o.kind }}: {{ o.searches }}</td><td class="num">{{ o.share(o.right_match) if o.kind.startswith("known") else "–" }}</td><td class="num">{{ o.share(o.wrong_match) }}</td><td class="num">{{ o.share(o.no_match) }}</td></tr>{% endfor %}
</table>{% endif %}
<div class="two"><div>
{% if det %}<img class="fig" src="{{ det }}" alt="DET curve">{% elif d.det_note %}<p class="note">{{ d.det_note }}</p>{% endif %}
</div><div>
<table>{% for name, value in d.calibration %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
{% if d.open_set %}<p></p><table>{% for name, value in d.open_set %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>{% endif %}
</div></div>
{% if sizes %}<h2>FPIR against gallery size</h2>
<p class="help">Test galleries enrolling more and more of the test characters (random draws); every image of the others is searched as non-mated. Each gallery sets its threshold as an index does: the calibration for its size, pooled with its own images searched as non-mated.</p>
<img class="fig" src="{{ sizes }}" alt="FPIR against gallery size">{% elif d.sizes_note %}<p class="note">{{ d.sizes_note }}</p>{% endif %}

{% if searches %}<h2>Searches of known characters, worst first</h2>
<p class="help">Query (blue frame) → its 5 nearest gallery images; a green frame is the query's own character. Decision: <i>match</i> (the nearest image's character) when the decision score is within the threshold.</p>
{% for c in searches %}{{ case(c) }}{% endfor %}{% endif %}

{% if no_match %}<h2>Characters left out of the gallery: should be “no match”</h2>
<p class="help">These queries' characters were removed from the gallery; the right answer is <i>no match</i>.</p>
{% for c in no_match %}{{ case(c) }}{% endfor %}{% endif %}

<h2>Configuration</h2>
<pre>{{ d.config_yaml }}</pre>

{% if stages %}<h2>Time per stage</h2>
<table>{% for name, t in stages %}<tr><td>{{ name }}</td><td class="num">{{ t }}</td></tr>{% endfor %}</table>{% endif %}

{% if d.commands %}<h2>Next</h2>
<table class="cmd">{% for what, cmd in d.commands %}<tr><td>{{ what }}</td><td>{{ cmd }}</td></tr>{% endfor %}</table>{% endif %}
{% for n in d.notes %}<p class="help">{{ n }}</p>{% endfor %}
</main></body></html>
"""
