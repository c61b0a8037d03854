"""The series: registry (label set -> slot, selection rules, limits), its compiled index
(``_index``, numba) and PromQL-style selectors."""
