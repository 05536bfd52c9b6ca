rule neighbours:
    input:
        "results/{sample}/intermediate/scored.h5ad",
    output:
        "results/{sample}/immune_neighbours.tsv",
    log:
        "logs/{sample}/neighbours.log",
    benchmark:
        "logs/{sample}/neighbours.benchmark.tsv"
    conda:
        "../../envs/niche.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.1),
    params:
        neighbours=config["neighbours"],
        seed=config["seed"],
    script:
        "../scripts/neighbours.py"


rule checkpoints:
    input:
        h5ad="results/{sample}/intermediate/scored.h5ad",
        genes=config["checkpoints"]["genes"],
    output:
        "results/{sample}/checkpoints.tsv",
    log:
        "logs/{sample}/checkpoints.log",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.05),
    script:
        "../scripts/checkpoints.py"


rule export:
    input:
        h5ad="results/{sample}/intermediate/scored.h5ad",
        neighbours="results/{sample}/immune_neighbours.tsv",
        checkpoints="results/{sample}/checkpoints.tsv",
    output:
        cells="results/{sample}/cells.tsv.gz",
        h5ad="results/{sample}/scored.h5ad",
    log:
        "logs/{sample}/export.log",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.05),
    script:
        "../scripts/export.py"
