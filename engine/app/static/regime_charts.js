// ECharts options for the chart data of engine/app/chart_data.py (shared by `regime-engine
// chart --out X.html` and the dashboard). RegimeCharts.option(data) picks by data.kind.
(function (root) {
  "use strict";
  const REGIME = { positive: "rgba(46,125,50,0.08)", negative: "rgba(198,40,40,0.08)" };
  const fmt = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(2));
  const money = (v) => {
    const a = Math.abs(v);
    for (const [s, u] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]]) {
      if (a >= s) return (v / s).toFixed(2) + u;
    }
    return Number(v).toFixed(0);
  };
  const vline = (x, name, color, type) =>
    x === null || x === undefined
      ? null
      : { xAxis: x, name: name + " " + fmt(x), lineStyle: { color: color, type: type },
          label: { formatter: name + " " + fmt(x), color: color, fontSize: 10 } };

  const frame = (d, xname) => ({
    animation: false,
    title: { text: d.title, textStyle: { fontSize: 12 } },
    tooltip: { trigger: "axis" },
    legend: { top: 24 },
    grid: { top: 60, left: 70, right: 30, bottom: 40 },
    xAxis: { type: "value", scale: true, name: xname },
    yAxis: { type: "value", axisLabel: { formatter: money } },
  });

  function profile(d) {
    const marks = [vline(d.spot, "spot", "#000", "solid")];
    d.zero_gamma_crossings.forEach((r, j) =>
      marks.push(vline(r, r === d.zero_gamma ? "zero gamma" : "crossing " + (j + 1),
        "#6a1b9a", r === d.zero_gamma ? "dashed" : "dotted")));
    marks.push(vline(d.call_wall, "call wall", "#1565c0", "dashed"));
    marks.push(vline(d.put_wall, "put wall", "#ef6c00", "dashed"));
    const series = d.lines.map((line, j) => ({
      name: line.label, type: "line", showSymbol: false,
      data: line.spots.map((s, i) => [s, line.values[i]]),
      markLine: j === 0 ? { symbol: "none", silent: true, data: marks.filter(Boolean) } : undefined,
      markArea: j === 0 ? { silent: true, data: d.spans.map((s) =>
        [{ xAxis: s.lo, itemStyle: { color: REGIME[s.regime] } }, { xAxis: s.hi }]) } : undefined,
    }));
    return Object.assign(frame(d, "spot"), { series: series });
  }

  function strikes(d) {
    const marks = [vline(d.spot, "spot", "#000", "solid"),
      vline(d.call_wall, "call wall", "#1565c0", "dashed"),
      vline(d.put_wall, "put wall", "#ef6c00", "dashed")].filter(Boolean);
    const pairs = (ys) => d.strikes.map((s, i) => [s, ys[i]]);
    return Object.assign(frame(d, "strike"), {
      series: [
        { name: "calls", type: "bar", stack: "gex", data: pairs(d.call_gex), itemStyle: { color: "#1565c0" },
          markLine: { symbol: "none", silent: true, data: marks } },
        { name: "puts", type: "bar", stack: "gex", data: pairs(d.put_gex), itemStyle: { color: "#ef6c00" } },
        { name: "net", type: "line", data: pairs(d.net_gex), itemStyle: { color: "#000" } },
      ],
    });
  }

  function heatmap(d) {
    const cells = [];
    d.gex.forEach((row, i) => row.forEach((v, j) => cells.push([j, i, v])));
    const spotRow = d.strikes.findIndex((s) => s >= d.spot);
    const marked = d.largest
      ? [{ coord: [d.expiries.indexOf(d.largest[1]), d.strikes.indexOf(d.largest[0])],
           value: "largest " + fmt(d.largest[0]) + " " + money(d.largest[2]) }]
      : [];
    return {
      animation: false,
      title: { text: d.title, textStyle: { fontSize: 12 } },
      tooltip: { position: "top" },
      grid: { top: 40, left: 80, right: 90, bottom: 60 },
      xAxis: { type: "category", data: d.expiries.map((e) => e.slice(0, 10)) },
      yAxis: { type: "category", data: d.strikes.map(fmt) },
      visualMap: { type: "continuous", min: -d.scale, max: d.scale, calculable: true,
        orient: "vertical", right: 0, top: "middle",
        inRange: { color: ["#b2182b", "#f7f7f7", "#2166ac"] }, formatter: money },
      series: [{ name: "GEX", type: "heatmap", data: cells,
        markPoint: { symbol: "rect", symbolSize: 14, data: marked,
          itemStyle: { color: "transparent", borderColor: "#000", borderWidth: 2 } },
        markLine: spotRow < 0 ? undefined : { symbol: "none", silent: true,
          data: [{ yAxis: spotRow, name: "spot " + fmt(d.spot), label: { formatter: "spot " + fmt(d.spot) } }] } }],
    };
  }

  const BUILD = { profile: profile, strikes: strikes, heatmap: heatmap };
  root.RegimeCharts = { option: (d) => BUILD[d.kind](d), fmt: fmt, money: money };
})(this);
