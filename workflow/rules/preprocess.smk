rule load:
    input:
        sample_input,
    output:
        intermediate("results/{sample}/intermediate/loaded.h5ad"),
    log:
        "logs/{sample}/load.log",
    benchmark:
        "logs/{sample}/load.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(3000, 6, streamed=is_h5ad),
        runtime=runtime(10, 0.05),
    params:
        fmt=lambda wc: sample_row(wc)["format"],
        cell_type_key=lambda wc: sample_row(wc)["cell_type_key"],
        spatial_key=lambda wc: sample_row(wc)["spatial_key"],
        obs_table=lambda wc: sample_row(wc)["obs_table"],
        obs_index=lambda wc: sample_row(wc)["obs_index"],
        subset=lambda wc: sample_row(wc)["subset"],
        member=lambda wc: sample_row(wc)["member"],
        gene_map=config["genes"]["map"],
        known_genes=KNOWN_GENES,
    script:
        "../scripts/load.py"


rule qc:
    input:
        "results/{sample}/intermediate/loaded.h5ad",
    output:
        h5ad=intermediate("results/{sample}/intermediate/qc.h5ad"),
        table="results/{sample}/qc.tsv",
    log:
        "logs/{sample}/qc.log",
    benchmark:
        "logs/{sample}/qc.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    # Scrublet batches of DOUBLET_BATCH (5,000) cells, one per thread at once (a sample of one batch uses one)
    threads: 2
    resources:
        # measured peak 1.8 / 3.1 / 5.8 GB for Scrublet on 2,500 / 5,000 / 10,000 cells of 1,960 genes each (44 /
        # 88 / 174 MB of .h5ad) in one process; two 5,000-cell workers and the streaming parent 7.0-7.5 GB (100,000
        # and 1,000,000 cells): 2,000 MB + 32 x MB of the 2 x 5,000 cells held at once
        mem_mb=mem_mb(2000, 32, batch_cells=10_000),
        runtime=runtime(10, 0.05),
    params:
        qc=config["qc"],
        cell_type_key=lambda wc: sample_row(wc)["cell_type_key"],
        seed=config["seed"],
    script:
        "../scripts/qc.py"


rule embed:
    input:
        h5ad="results/{sample}/intermediate/qc.h5ad",
        markers=config["annotation"]["markers"],
        compartments=config["annotation"]["compartments"],
    output:
        intermediate("results/{sample}/intermediate/embedded.h5ad"),
    log:
        "logs/{sample}/embed.log",
    benchmark:
        "logs/{sample}/embed.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(2000, 6, sketched=True),
        runtime=runtime(15, 0.2),
    params:
        embedding=config["embedding"],
        qc=config["qc"],
        scale=config["scale"],
        annotation=config["annotation"],
        cell_type_key=lambda wc: sample_row(wc)["cell_type_key"],
        seed=config["seed"],
    script:
        "../scripts/embed.py"
