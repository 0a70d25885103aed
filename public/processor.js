// The payment processor's browser library at work on two pages (loaded only
// there, after Stripe.js, when Stripe takes the payments):
//
// - the payment-methods page: Stripe.js collects the card in its own field
//   and confirms it with Stripe against the page's SetupIntent; only the
//   SetupIntent's id is posted to Tollgate. A refusal is shown next to the
//   card field in Tollgate's words (the page's `data-sentences`, the same
//   sentences as the server's) and nothing is saved.
// - an invoice's page: a payment the bank wants confirmed (3-D Secure) is
//   confirmed with Stripe.js, then posted to Tollgate, which asks Stripe
//   how it ended and settles it, whatever the browser saw.
(function () {
  "use strict";

  function show(el, message) {
    if (!el) return;
    el.textContent = message;
    el.hidden = !message;
  }

  function sentence(sentences, error) {
    if (!error) return sentences._ || "The payment did not go through.";
    return (
      (error.decline_code && sentences[error.decline_code]) ||
      (error.code && sentences[error.code]) ||
      sentences._ ||
      error.message ||
      "The payment did not go through."
    );
  }

  const cardForm = document.querySelector("form[data-processor-card]");
  if (cardForm && typeof Stripe === "function") {
    const stripe = Stripe(cardForm.dataset.key);
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    const cardError = document.getElementById("card-error");
    const nameError = document.getElementById("name-error");
    const sentences = JSON.parse(cardForm.dataset.sentences || "{}");
    const button = cardForm.querySelector("button[type=submit]");
    let sent = false;
    cardForm.addEventListener("submit", async (event) => {
      if (sent) return;
      event.preventDefault();
      show(cardError, "");
      show(nameError, "");
      const name = cardForm.elements.name.value.trim();
      if (!name) {
        show(nameError, "Enter the name on the card.");
        cardForm.elements.name.focus();
        return;
      }
      button.disabled = true;
      let result;
      try {
        result = await stripe.confirmCardSetup(cardForm.dataset.secret, {
          payment_method: { card, billing_details: { name } },
        });
      } catch (e) {
        result = { error: { code: "processing_error" } };
      }
      if (result.error || !result.setupIntent) {
        show(cardError, sentence(sentences, result.error));
        document.getElementById("card-element").closest(".field")?.classList.add("field-invalid");
        button.disabled = false;
        return;
      }
      cardForm.elements.token.value = result.setupIntent.id;
      // The name went to Stripe with the card; Tollgate needs only the token.
      cardForm.elements.name.disabled = true;
      sent = true;
      cardForm.submit();
    });
  }

  const confirmForm = document.querySelector("form[data-processor-confirm]");
  if (confirmForm && typeof Stripe === "function") {
    const stripe = Stripe(confirmForm.dataset.key);
    const button = confirmForm.querySelector("button[type=submit]");
    let sent = false;
    confirmForm.addEventListener("submit", async (event) => {
      if (sent) return;
      event.preventDefault();
      button.disabled = true;
      try {
        await stripe.confirmCardPayment(confirmForm.dataset.secret, {
          payment_method: confirmForm.dataset.paymentMethod,
        });
      } catch (e) {
        // Tollgate asks Stripe how it ended either way.
      }
      sent = true;
      confirmForm.submit();
    });
  }
})();
