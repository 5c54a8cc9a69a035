"""qmo-eval: the program eval Jobs run (benchmarks against two OpenAI-compatible endpoints, a
QualityReport written). A leaf like qmo.builder: the operator never imports it (an import
contract says so); the operator's own judging of reports is qmo.quality."""
