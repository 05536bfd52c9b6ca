# One job per small sample (config one_job_below_mb): the per-sample steps, from load to the figures, run one
# after another in one process (rule sample_steps, cscniche._smk.run_steps). Each step is the same thin script
# as its own rule, with the same inputs, outputs, parameters and log, so the tables are the same; only the
# imports are paid once instead of ~12 times. Larger samples run the rules of preprocess.smk, stemness.smk,
# niche.smk and report.smk one job per step. This file is included last: it reads those rules.
SAMPLE_STEPS = [
    "load",
    "qc",
    "embed",
    "cnv",
    "score",
    "project",
    "neighbours",
    *(["nhood_enrichment"] if config["neighbours"]["squidpy_enrichment"] else []),
    "checkpoints",
    "crosstalk",
    "export",
    "plot_sample",
]
ONE_JOB_SAMPLES = _glue.one_job_samples(samples, config["one_job_below_mb"])


SAMPLE_STEP_SPECS = _step_specs()


SAMPLE_STEPS_INPUTS, SAMPLE_STEPS_OUTPUTS, SAMPLE_STEPS_SCRATCH = _sample_steps_io()


rule sample_steps:
    input:
        SAMPLE_STEPS_INPUTS,
    output:
        **SAMPLE_STEPS_OUTPUTS,
    log:
        **sample_steps_logs(),
        steps="logs/{sample}/steps.tsv",
    benchmark:
        "logs/{sample}/sample_steps.benchmark.tsv"
    wildcard_constraints:
        sample="|".join(ONE_JOB_SAMPLES) or "(?!)",
    conda:
        "../../envs/sample.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000, 32),
        runtime=runtime(60, 1.0),
    params:
        plan=sample_step_plan,
        scratch=sample_steps_scratch,
    script:
        "../scripts/sample_steps.py"


# a sample in ONE_JOB_SAMPLES: its files come from sample_steps; the wildcard constraint keeps sample_steps off
# every other sample, whose files come from the step rules
ruleorder: sample_steps > load
ruleorder: sample_steps > qc
ruleorder: sample_steps > embed
ruleorder: sample_steps > cnv
ruleorder: sample_steps > score
ruleorder: sample_steps > project
ruleorder: sample_steps > neighbours
ruleorder: sample_steps > nhood_enrichment
ruleorder: sample_steps > checkpoints
ruleorder: sample_steps > crosstalk
ruleorder: sample_steps > export
ruleorder: sample_steps > plot_sample
