//! `AWS::Serverless::LayerVersion` and `AWS::Lambda::LayerVersion`.

use super::code;
use super::error::{Located, Result};
use super::intrinsic::{Context, Resource};
use super::model::Layer;
use super::value;

pub(crate) fn build(ctx: &Context<'_>, resource: &Resource<'_>) -> Result<Layer> {
    let id = resource.id();
    let serverless = resource.type_name == "AWS::Serverless::LayerVersion";
    let content_key = if serverless { "ContentUri" } else { "Content" };
    let props = resource.properties;
    let content = match props
        .map(|p| ctx.property(p, content_key))
        .transpose()?
        .flatten()
    {
        Some(node) => code::local(
            ctx.template_dir(),
            &node,
            &format!("{content_key} of layer {id}"),
        )?,
        None => {
            return Err(Located::new(
                resource.properties_pos(),
                format!("layer {id} has no {content_key} (a local directory or .zip file)"),
            ));
        }
    };
    let compatible_runtimes = match props
        .map(|p| ctx.property(p, "CompatibleRuntimes"))
        .transpose()?
        .flatten()
    {
        Some(node) => value::text_list(&node, &format!("CompatibleRuntimes of layer {id}"))?,
        None => Vec::new(),
    };
    let name = match props
        .map(|p| ctx.property(p, "LayerName"))
        .transpose()?
        .flatten()
    {
        Some(node) => value::text(&node, &format!("LayerName of layer {id}"))?,
        None => id.to_owned(),
    };
    let build_method = match resource
        .node
        .get("Metadata")
        .map(|m| ctx.property(m, "BuildMethod"))
        .transpose()?
        .flatten()
    {
        Some(node) => Some(value::text(
            &node,
            &format!("Metadata.BuildMethod of layer {id}"),
        )?),
        None => None,
    };
    Ok(Layer {
        logical_id: id.to_owned(),
        name,
        content,
        compatible_runtimes,
        build_method,
    })
}
