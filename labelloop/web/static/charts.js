// Small SVG charts for the owner dashboard: a line chart and a grouped bar chart.
// Colors come from the series-N classes in style.css.
"use strict";

const charts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 640;
  const HEIGHT = 260;
  const MARGIN = { top: 16, right: 16, bottom: 36, left: 52 };

  function svgElement(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) {
      node.textContent = String(text);
    }
    return node;
  }

  function frame(title) {
    const svg = svgElement("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      class: "chart-svg",
    });
    svg.append(svgElement("title", {}, title));
    return svg;
  }

  function niceMax(value) {
    if (!(value > 0)) {
      return 1;
    }
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * magnitude >= value) {
        return step * magnitude;
      }
    }
    return 10 * magnitude;
  }

  function formatTick(value) {
    return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(3)));
  }

  // Draws the y axis with five grid lines and the x axis labels.
  function axes(svg, xLabels, yMax, xPosition) {
    const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    for (let step = 0; step <= 4; step += 1) {
      const value = (yMax * step) / 4;
      const y = MARGIN.top + plotHeight - (plotHeight * step) / 4;
      svg.append(svgElement("line", {
        x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y, class: "grid",
      }));
      svg.append(svgElement("text", {
        x: MARGIN.left - 6, y: y + 4, class: "tick", "text-anchor": "end",
      }, formatTick(value)));
    }
    xLabels.forEach((label, index) => {
      svg.append(svgElement("text", {
        x: xPosition(index), y: HEIGHT - MARGIN.bottom + 16, class: "tick",
        "text-anchor": "middle",
      }, label));
    });
    svg.append(svgElement("text", {
      x: MARGIN.left + (WIDTH - MARGIN.left - MARGIN.right) / 2, y: HEIGHT - 4,
      class: "axis-title", "text-anchor": "middle",
    }, "round"));
  }

  function legend(container, series) {
    const list = document.createElement("ul");
    list.className = "legend";
    series.forEach((entry, index) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch series-${index}`;
      item.append(swatch, document.createTextNode(entry.name));
      list.append(item);
    });
    container.append(list);
  }

  function empty(container, message) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = message;
    container.replaceChildren(note);
  }

  // series: [{name, values}] with one value (or null) per x label.
  function line(container, xLabels, series, title) {
    const drawn = series.filter((entry) => entry.values.some((v) => v !== null));
    if (xLabels.length === 0 || drawn.length === 0) {
      empty(container, "No round has recorded these numbers yet.");
      return;
    }
    const values = drawn.flatMap((entry) => entry.values.filter((v) => v !== null));
    const yMax = Math.max(1, niceMax(Math.max(...values)));
    const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
    const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const xPosition = (index) => MARGIN.left
      + (xLabels.length === 1 ? plotWidth / 2 : (plotWidth * index) / (xLabels.length - 1));
    const yPosition = (value) => MARGIN.top + plotHeight - (plotHeight * value) / yMax;

    const svg = frame(title);
    axes(svg, xLabels, yMax, xPosition);
    drawn.forEach((entry) => {
      const index = series.indexOf(entry);
      const points = [];
      entry.values.forEach((value, position) => {
        if (value === null) {
          return;
        }
        points.push(`${xPosition(position)},${yPosition(value)}`);
        const dot = svgElement("circle", {
          cx: xPosition(position), cy: yPosition(value), r: 3.5,
          class: `dot series-${index}`,
        });
        dot.append(svgElement("title", {}, `${entry.name}, round ${xLabels[position]}: ${value}`));
        svg.append(dot);
      });
      svg.insertBefore(svgElement("polyline", {
        points: points.join(" "), class: `line series-${index}`,
      }), svg.querySelector("circle"));
    });
    container.replaceChildren(svg);
    legend(container, series);
  }

  function bars(container, xLabels, series, title) {
    const drawn = series.filter((entry) => entry.values.some((v) => v !== null));
    if (xLabels.length === 0 || drawn.length === 0) {
      empty(container, "No round has recorded these numbers yet.");
      return;
    }
    const values = drawn.flatMap((entry) => entry.values.filter((v) => v !== null));
    const yMax = niceMax(Math.max(...values));
    const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
    const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const slot = plotWidth / xLabels.length;
    const barWidth = Math.min(40, (slot * 0.8) / series.length);
    const xPosition = (index) => MARGIN.left + slot * index + slot / 2;

    const svg = frame(title);
    axes(svg, xLabels, yMax, xPosition);
    series.forEach((entry, seriesIndex) => {
      entry.values.forEach((value, position) => {
        if (value === null) {
          return;
        }
        const height = (plotHeight * value) / yMax;
        const x = xPosition(position) - (barWidth * series.length) / 2 + barWidth * seriesIndex;
        const bar = svgElement("rect", {
          x, y: MARGIN.top + plotHeight - height, width: barWidth, height,
          class: `bar series-${seriesIndex}`,
        });
        bar.append(svgElement("title", {}, `${entry.name}, round ${xLabels[position]}: ${value}`));
        svg.append(bar);
      });
    });
    container.replaceChildren(svg);
    legend(container, series);
  }

  return { line, bars };
})();
