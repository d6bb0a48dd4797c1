/** The one fake end user behind every grant, and the Salesforce-style ids that name it. */
export const FAKE_USER = Object.freeze({ sub: 'fake-user-1', name: 'Fake User' });
export const SALESFORCE_ORG_ID = '00Dfake0000000001';
export const SALESFORCE_USER_ID = '005fake0000000001';
