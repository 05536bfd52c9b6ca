rule fetch:
    output:
        "resources/downloads/{source}/manifest.tsv",
    log:
        "logs/fetch/{source}.log",
    localrule: True
    conda:
        "../../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        source=lambda wc: SOURCES[wc.source],
        geo_base=config["download"]["geo_base"],
        retries=config["download"]["retries"],
    script:
        "../scripts/fetch.py"
