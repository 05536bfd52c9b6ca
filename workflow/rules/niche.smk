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
        spatial_x=lambda wc: sample_row(wc).get("x_col", ""),
        spatial_y=lambda wc: sample_row(wc).get("y_col", ""),
        seed=config["seed"],
    script:
        "../scripts/neighbours.py"


rule nhood_enrichment:
    input:
        "results/{sample}/intermediate/scored.h5ad",
    output:
        "results/{sample}/nhood_enrichment.tsv",
    log:
        "logs/{sample}/nhood_enrichment.log",
    benchmark:
        "logs/{sample}/nhood_enrichment.benchmark.tsv"
    conda:
        "../../envs/niche.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.1),
    params:
        neighbours=config["neighbours"],
        spatial_x=lambda wc: sample_row(wc).get("x_col", ""),
        spatial_y=lambda wc: sample_row(wc).get("y_col", ""),
        seed=config["seed"],
    script:
        "../scripts/nhood_enrichment.py"


rule checkpoints:
    input:
        h5ad="results/{sample}/intermediate/scored.h5ad",
        genes=config["checkpoints"]["genes"],
    output:
        checkpoints="results/{sample}/checkpoints.tsv",
        pseudobulk="results/{sample}/checkpoint_pseudobulk.tsv",
        niche="results/{sample}/niche_checkpoints.tsv",
    log:
        "logs/{sample}/checkpoints.log",
    benchmark:
        "logs/{sample}/checkpoints.benchmark.tsv"
    conda:
        "../../envs/niche.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.1),
    params:
        neighbours=config["neighbours"],
        checkpoints=config["checkpoints"],
        spatial_x=lambda wc: sample_row(wc).get("x_col", ""),
        spatial_y=lambda wc: sample_row(wc).get("y_col", ""),
    script:
        "../scripts/checkpoints.py"


rule crosstalk:
    input:
        "results/{sample}/intermediate/scored.h5ad",
    output:
        table="results/{sample}/crosstalk.tsv",
        difference="results/{sample}/crosstalk_difference.tsv",
    log:
        "logs/{sample}/crosstalk.log",
    benchmark:
        "logs/{sample}/crosstalk.benchmark.tsv"
    conda:
        "../../envs/niche.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000, 8),
        runtime=runtime(20, 0.2),
    params:
        crosstalk=config["crosstalk"],
        seed=config["seed"],
    script:
        "../scripts/crosstalk.py"


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
    benchmark:
        "logs/{sample}/export.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4),
        runtime=runtime(10, 0.05),
    script:
        "../scripts/export.py"


rule patient_neighbours:
    input:
        patient_samples,
    output:
        "results/patients/{patient}/immune_neighbours_knn_shared.tsv",
    log:
        "logs/patients/{patient}/patient_neighbours.log",
    benchmark:
        "logs/patients/{patient}/patient_neighbours.benchmark.tsv"
    wildcard_constraints:
        patient="[A-Za-z0-9_-]+",
    conda:
        "../../envs/niche.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000, 8),
        runtime=runtime(15, 0.2),
    params:
        neighbours=config["neighbours"],
        embedding=config["embedding"],
        seed=config["seed"],
    script:
        "../scripts/patient_neighbours.py"
