rule demo_data:
    output:
        "resources/demo/{demo}.h5ad",
    log:
        "logs/demo/{demo}.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime(10),
    params:
        seed=lambda wc: {"demo_p1": 1, "demo_p2": 2}.get(wc.demo, sum(map(ord, wc.demo))),
        n_background=config["demo"]["n_background_genes"],
        gene_sets=config["scoring"]["gene_sets"],
    script:
        "../scripts/demo_data.py"
