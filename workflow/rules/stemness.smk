rule score:
    input:
        h5ad="results/{sample}/intermediate/annotated.h5ad",
        gene_sets=config["scoring"]["gene_sets"],
    output:
        h5ad=temp("results/{sample}/intermediate/scored.h5ad"),
        coverage="results/{sample}/signature_coverage.tsv",
    log:
        "logs/{sample}/score.log",
    benchmark:
        "logs/{sample}/score.benchmark.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.1),
    params:
        scoring=config["scoring"],
        quantile=config["csc"]["quantile"],
        seed=config["seed"],
    script:
        "../scripts/score.py"
