rule cohort_tables:
    input:
        **{key: expand("results/{sample}/{t}", sample=samples.index, t=t) for t, key in COHORT_KEYS.items()},
    output:
        **{key: f"results/cohort/{t}" for t, key in COHORT_KEYS.items()},
    log:
        "logs/cohort/cohort_tables.log",
    benchmark:
        "logs/cohort/cohort_tables.benchmark.tsv"
    localrule: True
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(500, 10),
        runtime=runtime(5, 0.05),
    script:
        "../scripts/cohort.py"


rule cohort_statistics:
    input:
        neighbours="results/cohort/immune_neighbours.tsv",
        pseudobulk="results/cohort/checkpoint_pseudobulk.tsv",
        crosstalk="results/cohort/crosstalk_difference.tsv",
    output:
        **{name: f"results/cohort/{name}.tsv" for name in COHORT_STATISTICS},
    log:
        "logs/cohort/cohort_statistics.log",
    benchmark:
        "logs/cohort/cohort_statistics.benchmark.tsv"
    localrule: True
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(500, 10),
        runtime=runtime(5, 0.05),
    params:
        samples=lambda wc: {s: samples.loc[s, "patient"] for s in samples.index},
    script:
        "../scripts/cohort_statistics.py"


rule csc_burden_immune:
    input:
        cells="results/cohort/cells.tsv.gz",
    output:
        test="results/cohort/csc_burden_immune.tsv",
        patients="results/cohort/csc_burden_patients.tsv",
    log:
        "logs/cohort/csc_burden_immune.log",
    benchmark:
        "logs/cohort/csc_burden_immune.benchmark.tsv"
    localrule: True
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(500, 10),
        runtime=runtime(5, 0.05),
    params:
        samples=lambda wc: {s: samples.loc[s, "patient"] for s in samples.index},
    script:
        "../scripts/csc_burden_immune.py"
