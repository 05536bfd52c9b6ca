rule cohort_table:
    input:
        lambda wc: expand("results/{sample}/{table}", sample=samples.index, table=wc.table),
    output:
        "results/cohort/{table}",
    log:
        "logs/cohort/{table}.log",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in COHORT_TABLES),
    localrule: True
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(500, 10),
        runtime=runtime(5, 0.05),
    script:
        "../scripts/cohort.py"
