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
    script:
        "../scripts/cohort.py"
