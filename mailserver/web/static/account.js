// Checks the new password against the Đ9 rules while the user types.
// The rules come from the page (data-* attributes written from policy.yaml),
// so this file has no numbers of its own; the server checks everything again.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("change");
  if (!form) return;
  const current = document.getElementById("current");
  const fresh = document.getElementById("new");
  const confirm = document.getElementById("confirm");
  const list = document.getElementById("rules");
  const min = Number(list.dataset.min);
  const max = Number(list.dataset.max);
  const special = list.dataset.special || "";

  const tests = {
    min_length: (p) => [...p].length >= min && [...p].length <= max,
    upper: (p) => /\p{Lu}/u.test(p),
    lower: (p) => /\p{Ll}/u.test(p),
    digit: (p) => /\p{Nd}/u.test(p),
    special: (p) => [...p].some((c) => special.includes(c)),
    confirm: (p) => p.length > 0 && p === confirm.value,
    differs: (p) => p.length > 0 && p !== current.value,
  };

  function update() {
    const value = fresh.value;
    for (const item of list.querySelectorAll("li[data-rule]")) {
      const test = tests[item.dataset.rule];
      if (!test) continue;
      const met = value.length > 0 && test(value);
      item.classList.toggle("met", met);
      item.classList.toggle("unmet", value.length > 0 && !met);
    }
  }

  for (const input of [current, fresh, confirm]) input.addEventListener("input", update);

  const show = document.getElementById("show");
  show.addEventListener("change", () => {
    for (const input of [current, fresh, confirm]) input.type = show.checked ? "text" : "password";
  });
  update();
});
