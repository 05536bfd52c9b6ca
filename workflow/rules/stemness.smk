config["cnv"]["gene_positions"] = resolve(config["cnv"]["gene_positions"])


rule cnv:
    input:
        h5ad="results/{sample}/intermediate/embedded.h5ad",
    output:
        h5ad=intermediate("results/{sample}/intermediate/cnv.h5ad"),
        table="results/{sample}/malignant_calls.tsv",
    log:
        "logs/{sample}/cnv.log",
    benchmark:
        "logs/{sample}/cnv.benchmark.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1500, 8),
        runtime=runtime(10, 0.2),
    params:
        cnv=config["cnv"],
        seed=config["seed"],
    script:
        "../scripts/cnv.py"


rule score:
    input:
        h5ad="results/{sample}/intermediate/cnv.h5ad",
        gene_sets=config["scoring"]["gene_sets"],
    output:
        h5ad=intermediate("results/{sample}/intermediate/scored.h5ad"),
        coverage="results/{sample}/signature_coverage.tsv",
        summary="results/{sample}/stemness_summary.tsv",
        pseudobulk="results/{sample}/pseudobulk_scores.tsv",
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
        csc=config["csc"],
        seed=config["seed"],
        tumour_type=lambda wc: sample_row(wc).get("tumour_type", ""),
    script:
        "../scripts/score.py"


rule project:
    input:
        qc="results/{sample}/intermediate/qc.h5ad",
        sketch="results/{sample}/intermediate/scored.h5ad",
        gene_sets=config["scoring"]["gene_sets"],
    output:
        "results/{sample}/cells_all.tsv.gz",
    log:
        "logs/{sample}/project.log",
    benchmark:
        "logs/{sample}/project.benchmark.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(3000, 6, counted="sketch"),
        runtime=runtime(10, 0.05),
    params:
        scoring=config["scoring"],
        csc=config["csc"],
        embedding=config["embedding"],
        qc=config["qc"],
        seed=config["seed"],
    script:
        "../scripts/project.py"
